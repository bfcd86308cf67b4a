"""Health checks: each service is reachable, current enough, and not in distress."""
