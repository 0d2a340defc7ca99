"""The food-ordering app: models, universal services, and two sets of async views."""
