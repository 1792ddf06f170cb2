"""The command line: a thin skin over the services (parse, call, render)."""

import os

# Skip pydantic's plugin discovery, an entry-point scan of every installed package (~40 ms
# per command); aictl uses no pydantic plugins. Runs before pydantic is first imported on
# the CLI's path; an explicit setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
