"""`aictl console`: a local web page to watch and steer the agents, and `/metrics` for Prometheus.

Layout:

=============  ==================================================================================
security.py    who may connect: loopback unless a bearer token is set, the Host check, CSRF tokens
changes.py     one poller per server asks the store "what changed since" (audit head, held tasks'
               activity, AI rows) and wakes every open page's event stream
views.py       the data of each page, read in one read transaction, redacted before it is shown
taskpage.py    one task's page: timeline, evidence, decisions, attempts by epoch
reports.py     audit (log with filters, `audit verify`) and usage (per AI per day, budgets)
render.py      Jinja templates, the diff highlighter, the inline SVG charts and DAG
app.py         the Starlette app: pages, the event stream, approve/reject, /metrics
metrics.py     the Prometheus collector over the store (also served by each daemon)
server.py      binding and serving (uvicorn), refusing a non-loopback bind without a token
=============  ==================================================================================

Starlette, uvicorn, Jinja and prometheus_client are imported only by this package, and the CLI
imports it only inside `aictl console` (start time of every other command is tested).
The browser gets server-rendered HTML; one EventSource per page receives the page's live part
re-rendered when the store changed (no polling from the browser). Assets are vendored in static/.
"""
