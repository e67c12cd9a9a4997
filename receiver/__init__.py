"""The web face of Backstop: the Flask app factory, webhooks, JSON API and /metrics.

No business rules live here: requests are authenticated, validated and handed to
`core.intake`.
"""
