"""Azure Functions blueprints: each trigger parses its input, calls one service function, returns."""

import logging

# The Python worker forwards every log record under the invoking function's category, so host.json's
# log levels cannot tell the SDKs' INFO lines (request headers, token fetches, retries) from ours.
# They are held at WARNING here; their warnings and errors still reach Application Insights.
SDK_LOGGERS = ("azure", "msal", "httpx", "httpcore", "kiota_http", "msgraph", "msgraph_core")
for _name in SDK_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)
