"""The ``runlog`` command line: thin typer commands over the library."""
