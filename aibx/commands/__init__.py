"""One module per verb: ``add_parser(subparsers)`` declares it, ``run(args)`` carries it out.

Modules import only the standard library at import time; heavy libraries are imported inside ``run``.
"""
