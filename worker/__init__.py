"""The worker service: stateless replicas that handle events and run the bot's commands."""
