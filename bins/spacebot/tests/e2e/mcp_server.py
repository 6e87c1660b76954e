"""A small MCP server on the `mcp` Python package's reference server (MCPServer, formerly FastMCP),
for the end-to-end tests of the MCP client: `python mcp_server.py stdio`, or
`python mcp_server.py http PORT` for streamable HTTP at http://127.0.0.1:PORT/mcp."""

import os
import sys

try:
    from mcp.server.mcpserver import MCPServer
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as MCPServer

server = MCPServer("spacebot-test")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return f"the sum is {a + b}"


@server.tool()
def whereami() -> str:
    """Say whether this server runs in Spacebot's sandbox, and what it sees of the daemon."""
    sandbox = os.environ.get("SPACEBOT_SANDBOX", "none")
    keys = sorted(key for key in os.environ if key.endswith("_KEY") or key.endswith("_TOKEN"))
    return f"sandbox={sandbox} secret_env={','.join(keys) or 'none'} home={os.environ.get('HOME', '')}"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
