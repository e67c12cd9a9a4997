"""Game days: the real alerting pipeline end to end (`backstop gameday`)."""
