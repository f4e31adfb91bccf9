"""The API's own metrics: requests by route template and status, and their duration.

Labels are route templates (`/jobs/{job_id}`), never raw paths, so the series stay few.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics

# `*_created` series double the output and no dashboard here reads them.
disable_created_metrics()

HTTP_REQUESTS = Counter(
    "kinema_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "kinema_http_request_duration_seconds",
    "Time from a request's arrival to the start of its response, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Route label for requests that matched no route (404s of unknown paths) or were refused before routing.
UNMATCHED_ROUTE = "<unmatched>"
