"""Mail derived from events: which events mail whom, the outbox projection, and the postman."""
