"""The P1 baseline: a bare Flask app that only parses the webhook JSON and returns 202."""

import json

from flask import Flask, jsonify, request


def create_app() -> Flask:
    """Same route and the same JSON parsing as the receiver; nothing else."""
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.post("/webhooks/alertmanager")
    def alertmanager():
        body = json.loads(request.get_data())
        return jsonify({"accepted": len(body["alerts"]), "duplicates": 0}), 202

    return app
