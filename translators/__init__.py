"""aibx.translators"""
