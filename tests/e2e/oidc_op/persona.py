"""The test provider's client and user, shared by its setup and the test."""

CLIENT_ID = "switchyard"
CLIENT_SECRET = "switchyard-client-secret-of-the-tests"
USERNAME, PASSWORD = "pat", "pat-at-acme-pw-1"
