"""The console's backups page of an instance: list, back up now, download, restore."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from instances import services as instance_services
from quantmesh.errors import ServiceError

from . import selectors, services
from .models import Backup


@login_required
def instance_backups(request, instance_id: str):
    instance = selectors.backup_instance_get(owner=request.user, instance_id=instance_id)
    if instance is None:
        raise Http404
    if request.method == "POST":
        try:
            if request.POST.get("action") == "create":
                backup = services.backup_create(instance=instance, kind=Backup.Kind.MANUAL)
                if backup.status == Backup.Status.OK:
                    messages.success(request, _("Backup %(id)s taken.") % {"id": backup.backup_id})
                else:
                    messages.error(request, _("The backup failed: %(error)s") % {"error": backup.error})
            elif request.POST.get("action") == "restore":
                backup = selectors.backup_get(instance=instance, backup_id=request.POST.get("backup_id", ""))
                if backup is None:
                    raise Http404
                target = None
                if request.POST.get("into") == "new":
                    services.backup_read(backup=backup)
                    target = instance_services.instance_create(owner=request.user, plan_code=instance.plan.code)
                target = services.backup_restore(backup=backup, target=target, actor=request.user)
                messages.success(
                    request,
                    _("Restoring %(backup)s into %(instance)s: it restarts when the data is in place.")
                    % {"backup": backup.backup_id, "instance": target.instance_id},
                )
                return redirect("instance_detail", instance_id=target.instance_id)
        except ServiceError as error:
            messages.error(request, error.message)
        return redirect("instance_backups", instance_id=instance_id)
    context = {"instance": instance, "backups": selectors.backup_list(instance=instance)[:100]}
    return render(request, "backups/instance_backups.html", context)
