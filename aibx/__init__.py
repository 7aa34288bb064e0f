"""aibx: validate, translate, plan and run Azure VM Image Builder templates."""

__version__ = "0.1.0"
