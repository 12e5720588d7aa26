from background_task.apps import BackgroundTasksAppConfig


class BackgroundTasksConfig(BackgroundTasksAppConfig):
    # django-background-tasks ships migrations made with AutoField; without this the
    # project-wide BigAutoField would ask for a new migration inside site-packages.
    default_auto_field = "django.db.models.AutoField"
