"""Azure Functions entrypoint: a table of contents, nothing else.

Each trigger lives in a blueprint under ``provisioning/entrypoints/functions`` and calls one service
function; this file only registers them.
"""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
