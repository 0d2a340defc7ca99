from django.core.management.base import BaseCommand

from demo.food.seed import seed


class Command(BaseCommand):
    help = "Fill an empty (migrated) demo database with the menu and customers."

    def handle(self, *args, **options):
        seed()
        self.stdout.write("Seeded the menu and customers.")
