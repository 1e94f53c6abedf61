"""What every process of the project sets up the same way: logging and Kafka clients."""
