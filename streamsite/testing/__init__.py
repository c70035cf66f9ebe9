"""Test rig shared by every app's tests: live ASGI servers, browsers, service checks."""

# The password of every user the test fixtures create.
PASSWORD = "correct-horse-battery-staple"
