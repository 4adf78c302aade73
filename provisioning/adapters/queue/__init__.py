"""Work queues: Service Bus in Azure, in-process for the CLI and tests."""
