"""Inside Locust: users, pacing, interval shipping and the run sink."""
