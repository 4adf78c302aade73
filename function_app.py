"""Azure Functions entrypoint: a table of contents, nothing else.

Each trigger lives in a blueprint under ``provisioning/entrypoints/functions`` and calls one service
function; this file only registers them.
"""

import azure.functions as func

from provisioning.entrypoints.functions import timers, webhook, worker

# FUNCTION is only the default: the Graph webhook routes declare themselves anonymous (Graph sends no
# credential; the secret clientState in every notification is the proof).
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(webhook.bp)  # Graph → POST /api/graph/notifications, /api/graph/lifecycle
app.register_functions(timers.bp)  # subscriptions kept alive, safety-net delta pass, nightly reconciliation
app.register_functions(worker.bp)  # Service Bus → delta pass / reconciliation / lifecycle reaction
