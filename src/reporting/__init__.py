"""Building blocks of the `report` stage: reading its inputs, tables, figures, and rendering the Jinja2 template."""
