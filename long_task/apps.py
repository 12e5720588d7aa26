from background_task.apps import BackgroundTasksAppConfig
from django.contrib.admin.apps import AdminConfig


class BackgroundTasksConfig(BackgroundTasksAppConfig):
    # django-background-tasks ships migrations made with AutoField; without this the
    # project-wide BigAutoField would ask for a new migration inside site-packages.
    default_auto_field = "django.db.models.AutoField"


class ConsoleAdminConfig(AdminConfig):
    # The admin site with the operator's list of applications (operations/admin_site.py).
    default_site = "operations.admin_site.ConsoleSite"
