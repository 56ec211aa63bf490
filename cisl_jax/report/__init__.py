"""The report of a reproduce run: readme.py writes it from results.py, tables.py, figures.py."""
