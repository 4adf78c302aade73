"""Azure Functions blueprints: each trigger parses its input, calls one service function, returns."""
