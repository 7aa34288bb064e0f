"""aibx.engine.transports"""
