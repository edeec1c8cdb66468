"""`cdcda bench ...`: measured figures as JSON, one benchmark per module."""
