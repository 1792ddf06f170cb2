"""aictl over the Model Context Protocol.

Layout: `ops.py` runs each tool through the same services and policy as the CLI (no `mcp` import);
`server.py` declares the tools, resources and prompt on the SDK's MCPServer; `http.py` serves it over
streamable HTTP behind a bearer token. The `mcp` SDK is imported only by the last two, so the CLI's hot
commands never load it.
"""
