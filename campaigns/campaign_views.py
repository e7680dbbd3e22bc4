"""The campaign endpoints of the reference, plus `cancel`, `deliveries`, and the public tracked-link redirect."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import lifecycle
from campaigns.campaigns import campaign_create, campaign_update, schedule_of
from campaigns.links import link_click
from campaigns.metrics import campaign_metrics, estimated_completion, summary_metrics
from campaigns.models import Campaign, CampaignStatus, CampaignType, Delivery, DeliveryStatus
from campaigns.serializers import (
    CampaignDetailOutput,
    CampaignInput,
    CampaignMetricsOutput,
    CampaignOutput,
    CampaignUpdateInput,
    DeliveryOutput,
    TestSendInput,
    TestSendOutput,
)
from campaigns.testsend import campaign_test_send
from mktx.api.pagination import paginated_response, read_skip_take
from mktx.api.params import query_choice, query_int
from mktx.api.viewsets import MerchantViewSet

TAGS = ["campaigns"]


@extend_schema_view(
    list=extend_schema(
        summary="List campaigns",
        tags=TAGS,
        parameters=[
            OpenApiParameter("status", str, enum=CampaignStatus.values),
            OpenApiParameter("type", str, enum=CampaignType.values),
        ],
        responses=CampaignOutput(many=True),
    ),
    retrieve=extend_schema(summary="Get campaign", tags=TAGS, responses=CampaignDetailOutput),
    create=extend_schema(
        summary="Create campaign", tags=TAGS, request=CampaignInput, responses={200: CampaignDetailOutput}
    ),
    update=extend_schema(
        summary="Update campaign", tags=TAGS, request=CampaignUpdateInput, responses=CampaignDetailOutput
    ),
)
class CampaignViewSet(mixins.ListModelMixin, MerchantViewSet):
    serializer_class = CampaignOutput
    http_method_names = ["get", "post", "put", "head", "options"]

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Campaign]:
        return Campaign.objects.filter(merchant_id=merchant_id).prefetch_related("segments")

    def _answer(self, campaign: Campaign) -> Response:
        campaign = self.get_merchant_queryset(self.merchant_id).get(pk=campaign.pk)
        campaign.metrics = summary_metrics([campaign.pk])[campaign.pk]  # type: ignore[attr-defined]
        campaign.estimated_completion_at = estimated_completion(campaign)  # type: ignore[attr-defined]
        return Response(CampaignDetailOutput(campaign).data)

    def list(self, request: Request) -> Response:
        queryset = self.get_merchant_queryset(self.merchant_id)
        status = query_choice(request, "status", CampaignStatus.values)
        kind = query_choice(request, "type", CampaignType.values)
        if status:
            queryset = queryset.filter(status=status)
        if kind:
            queryset = queryset.filter(type=kind)
        skip, take = read_skip_take(request)
        total = queryset.count()
        page = list(queryset[skip : skip + take])
        metrics = summary_metrics([c.pk for c in page])
        for campaign in page:
            campaign.metrics = metrics[campaign.pk]  # type: ignore[attr-defined]
        return paginated_response(CampaignOutput(page, many=True).data, skip=skip, take=take, total=total)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return self._answer(self.get_object())

    def create(self, request: Request) -> Response:
        data = CampaignInput(data=request.data)
        data.is_valid(raise_exception=True)
        return self._answer(campaign_create(merchant_id=self.merchant_id, **data.validated_data))

    def update(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        data = CampaignUpdateInput(data=request.data, context={"schedule": schedule_of(campaign)})
        data.is_valid(raise_exception=True)
        return self._answer(campaign_update(campaign=campaign, **data.validated_data))

    @extend_schema(summary="Start campaign", tags=TAGS, request=None, responses=CampaignDetailOutput)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return self._answer(lifecycle.campaign_start(campaign=self.get_object()))

    @extend_schema(summary="Pause campaign", tags=TAGS, request=None, responses=CampaignDetailOutput)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._answer(lifecycle.campaign_pause(campaign=self.get_object()))

    @extend_schema(summary="Resume campaign", tags=TAGS, request=None, responses=CampaignDetailOutput)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._answer(lifecycle.campaign_resume(campaign=self.get_object()))

    @extend_schema(summary="Cancel campaign", tags=TAGS, request=None, responses=CampaignDetailOutput)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._answer(lifecycle.campaign_cancel(campaign=self.get_object()))

    @extend_schema(
        summary="Get campaign metrics",
        tags=TAGS,
        responses=CampaignMetricsOutput,
        parameters=[OpenApiParameter("run", int, description="One occurrence of a recurring campaign")],
    )
    @action(detail=True, methods=["get"])
    def metrics(self, request: Request, pk: str | None = None) -> Response:
        run = query_int(request, "run", default=0, minimum=0)
        return Response(CampaignMetricsOutput(campaign_metrics(self.get_object(), run_number=run or None)).data)

    @extend_schema(summary="Send test campaign", tags=TAGS, request=TestSendInput, responses=TestSendOutput)
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        data = TestSendInput(data=request.data)
        data.is_valid(raise_exception=True)
        results = campaign_test_send(
            campaign=campaign,
            contact_ids=data.validated_data["contact_ids"],
            variables=data.validated_data.get("variables") or {},
        )
        return Response(TestSendOutput({"results": results}).data)

    @extend_schema(
        summary="List campaign deliveries",
        tags=TAGS,
        responses=DeliveryOutput(many=True),
        parameters=[
            OpenApiParameter("status", str, enum=DeliveryStatus.values),
            OpenApiParameter("reason", str),
            OpenApiParameter("run", int),
            OpenApiParameter("skip", int),
            OpenApiParameter("take", int),
        ],
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        queryset = Delivery.objects.filter(campaign=campaign).select_related("run").order_by("id")
        status = query_choice(request, "status", DeliveryStatus.values)
        if status:
            queryset = queryset.filter(status=status)
        reason = (request.query_params.get("reason") or "").strip()
        if reason:
            queryset = queryset.filter(reason=reason)
        run = query_int(request, "run", default=0, minimum=0)
        if run:
            queryset = queryset.filter(run__number=run)
        skip, take = read_skip_take(request)
        total = queryset.count()
        data = DeliveryOutput(queryset[skip : skip + take], many=True).data
        return paginated_response(data, skip=skip, take=take, total=total)


def tracked_link(request: HttpRequest, token: str) -> HttpResponse:
    """`GET /l/<token>`: record the click, 302 to the original URL; an unknown token is a 404."""
    url = link_click(token) if len(token) <= 32 else None
    if url is None:
        raise Http404("Link not found")
    return HttpResponseRedirect(url)
