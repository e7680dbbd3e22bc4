"""The automation flow endpoints of the reference, plus `enroll` (manual trigger) and one execution's detail."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from automation import flows, selectors
from automation.models import Execution, ExecutionStatus, Flow, FlowStatus
from automation.serializers import (
    EnrollInput,
    EnrollOutput,
    ExecutionDetailOutput,
    ExecutionOutput,
    FlowInput,
    FlowOutput,
    FlowUpdateInput,
    flow_body,
)
from automation.validation import flow_definition_clean
from mktx.api.errors import NotFoundError
from mktx.api.pagination import paginated_response, read_skip_take
from mktx.api.params import query_choice, query_uuid
from mktx.api.viewsets import MerchantViewSet

TAGS = ["automation"]
PAGE = [OpenApiParameter("skip", int), OpenApiParameter("take", int)]


@extend_schema_view(
    list=extend_schema(
        summary="List automation flows",
        tags=TAGS,
        parameters=[OpenApiParameter("status", str, enum=FlowStatus.values)],
        responses=FlowOutput(many=True),
    ),
    retrieve=extend_schema(summary="Get automation flow", tags=TAGS, responses=FlowOutput),
    create=extend_schema(summary="Create automation flow", tags=TAGS, request=FlowInput, responses={200: FlowOutput}),
    update=extend_schema(
        summary="Update automation flow",
        description="A draft or inactive flow only: an active one answers 400 (deactivate first).",
        tags=TAGS,
        request=FlowUpdateInput,
        responses=FlowOutput,
    ),
    destroy=extend_schema(
        summary="Delete automation flow",
        description="Cancels its running executions; the flow answers 404 from then on.",
        tags=TAGS,
        responses={200: None},
    ),
)
class FlowViewSet(MerchantViewSet):
    serializer_class = FlowOutput
    http_method_names = ["get", "post", "put", "delete", "head", "options"]

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Flow]:
        return selectors.flows_of(merchant_id)

    def _flows(self, page: Iterable[Flow]) -> list[Flow]:
        page = list(page)
        counts = selectors.flow_execution_counts(flow.pk for flow in page)
        for flow in page:
            flow.execution_counts = counts[flow.pk]  # type: ignore[attr-defined]
        return page

    def _answer(self, flow: Flow) -> Response:
        return Response(FlowOutput(self._flows([flow])[0]).data)

    def list(self, request: Request) -> Response:
        queryset = self.get_queryset()
        status = query_choice(request, "status", FlowStatus.values)
        if status:
            queryset = queryset.filter(status=status)
        skip, take = read_skip_take(request)
        total = queryset.count()
        page = self._flows(queryset[skip : skip + take]) if skip < total else []
        return paginated_response(FlowOutput(page, many=True).data, skip=skip, take=take, total=total)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return self._answer(self.get_object())

    def create(self, request: Request) -> Response:
        definition = flow_definition_clean(merchant_id=self.merchant_id, data=flow_body(request.data))
        return self._answer(flows.flow_create(merchant_id=self.merchant_id, definition=definition))

    def update(self, request: Request, pk: str | None = None) -> Response:
        flow = self.get_object()
        flows.flow_check_editable(flow)
        definition = flow_definition_clean(
            merchant_id=self.merchant_id, data=flow_body(request.data), base=flows.definition_of(flow)
        )
        return self._answer(flows.flow_update(flow=flow, definition=definition))

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        flows.flow_delete(flow=self.get_object())
        return Response(None)

    @extend_schema(summary="Activate automation flow", tags=TAGS, request=None, responses=FlowOutput)
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        return self._answer(flows.flow_activate(flow=self.get_object()))

    @extend_schema(
        summary="Deactivate automation flow",
        description="Cancels its running executions (error `flow_deactivated`).",
        tags=TAGS,
        request=None,
        responses=FlowOutput,
    )
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, pk: str | None = None) -> Response:
        return self._answer(flows.flow_deactivate(flow=self.get_object()))

    @extend_schema(
        summary="Enroll contacts into a manual flow",
        description="The flow must be active with trigger `manual`; each contact must be the merchant's.",
        tags=TAGS,
        request=EnrollInput,
        responses=EnrollOutput,
    )
    @action(detail=True, methods=["post"])
    def enroll(self, request: Request, pk: str | None = None) -> Response:
        flow = self.get_object()
        data = EnrollInput(data=request.data)
        data.is_valid(raise_exception=True)
        results = flows.flow_enroll(flow=flow, contact_ids=data.validated_data["contact_ids"])
        started = [outcome.pk for _, outcome in results if isinstance(outcome, Execution)]
        loaded = selectors.executions_by_id(started)
        skipped = [
            {"contact_id": contact.pk, "reason": outcome} for contact, outcome in results if isinstance(outcome, str)
        ]
        body = {"enrolled": len(started), "executions": [loaded[pk] for pk in started], "skipped": skipped}
        return Response(EnrollOutput(body).data)

    @extend_schema(
        summary="List flow executions",
        tags=TAGS,
        parameters=[
            OpenApiParameter("status", str, enum=ExecutionStatus.values),
            OpenApiParameter("contactId", OpenApiTypes.UUID),
            *PAGE,
        ],
        responses=ExecutionOutput(many=True),
    )
    @action(detail=True, methods=["get"])
    def executions(self, request: Request, pk: str | None = None) -> Response:
        flow = self.get_object()
        status = query_choice(request, "status", ExecutionStatus.values)
        contact_id = query_uuid(request, "contactId")
        queryset = selectors.executions_filter(selectors.executions_of(flow), status=status, contact_id=contact_id)
        skip, take = read_skip_take(request)
        total = queryset.count()
        page = list(queryset[skip : skip + take]) if skip < total else []
        return paginated_response(ExecutionOutput(page, many=True).data, skip=skip, take=take, total=total)

    @extend_schema(
        summary="Get flow execution",
        tags=TAGS,
        parameters=[OpenApiParameter("execution_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses=ExecutionDetailOutput,
    )
    @action(detail=True, methods=["get"], url_path=r"executions/(?P<execution_id>[^/.]+)")
    def execution(self, request: Request, pk: str | None = None, execution_id: str = "") -> Response:
        flow = self.get_object()
        try:
            wanted = uuid.UUID(execution_id)
        except ValueError:
            raise NotFoundError("Execution not found", details={"id": execution_id}) from None
        found = selectors.execution_of(flow, wanted)
        if found is None:
            raise NotFoundError("Execution not found", details={"id": execution_id})
        found.visited = list(selectors.execution_steps(found))  # type: ignore[attr-defined]
        return Response(ExecutionDetailOutput(found).data)
