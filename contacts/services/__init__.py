"""Writes of the inbox. Views, tasks, the admin and the webhook handler table call these."""
