"""aibx.provisioners"""
