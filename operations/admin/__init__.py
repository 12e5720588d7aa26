"""The admin as the operator console (SPEC §10): live list and detail pages, an import page,
Pause / Resume / Terminate on an operation's page, and the bulk actions.

- `operation_admin`: the ModelAdmin (list, page, permissions, actions), which mounts
- `console`: the console's own views (the live JSON that the pages poll, the buttons, the
  import page and its preview);
- `dashboard`: the landing page (the admin's index, and `/` once logged in), with its chart
  (`chart`) and its live view;
- `formatting`: every figure as text, once, for the pages and the live view alike
  (static/operations/console.js only copies the text it is given);
- `page_fields`: the read-only fields of an operation's page, in words; `filters`: the list's
  created filter (days and a range of days).

The site itself is `operations.admin_site.ConsoleSite` (outside this package: Django imports the
site's class when `admin.site` is first used, which may be while another app's admin module is
being loaded, and it must not import this package then), which puts the operations first in the list of applications
and the machinery under "System".

Django's admin autodiscovery imports this package, which registers the ModelAdmin.
"""

from django.contrib import admin

from operations.admin.operation_admin import OperationAdmin
from operations.models import Operation

admin.site.site_header = "long_task operator console"
admin.site.site_title = "long_task"
admin.site.index_title = "Operations and users"
admin.site.index_template = "admin/operations/dashboard.html"
admin.site.register(Operation, OperationAdmin)
