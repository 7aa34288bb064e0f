"""aibx.engine"""
