from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from alerts import selectors, services
from quantmesh.api import pagination

from .serializers import AlertOutputSerializer, AlertSettingsInputSerializer, AlertSettingsSerializer


class AlertSettingsApi(APIView):
    @extend_schema(responses=AlertSettingsSerializer, operation_id="alerts_settings_get")
    def get(self, request):
        return Response(AlertSettingsSerializer(services.alert_settings_get(user=request.user)).data)

    @extend_schema(
        request=AlertSettingsInputSerializer, responses=AlertSettingsSerializer, operation_id="alerts_settings_update"
    )
    def put(self, request):
        data = AlertSettingsInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        updated = services.alert_settings_update(user=request.user, **data.validated_data)
        return Response(AlertSettingsSerializer(updated).data)


class AlertListApi(APIView):
    @extend_schema(
        parameters=pagination.PARAMETERS, responses=AlertOutputSerializer(many=True), operation_id="alerts_list"
    )
    def get(self, request):
        page = pagination.cursor_page(request, selectors.alert_list(user=request.user, limit=None))
        return Response(AlertOutputSerializer(page.items, many=True).data, headers=page.headers)
