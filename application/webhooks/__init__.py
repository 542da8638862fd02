"""Events to other systems: endpoints, the feed that queues their deliveries, the courier."""
