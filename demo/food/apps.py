from django.apps import AppConfig


class FoodConfig(AppConfig):
    name = "demo.food"
    label = "food"
    default_auto_field = "django.db.models.BigAutoField"
