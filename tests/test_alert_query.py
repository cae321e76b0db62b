from retrieval.alert_query import build_alert_query, expression_terms, split_identifier

ALERT = {
    "labels": {"alertname": "RegistryServiceServerErrorSLOViolation", "severity": "s2",
               "type": "registry", "pager": "pagerduty"},
    "annotations": {
        "title": "The server SLI of the registry service has an error rate violating SLO",
        "description": "RegistryServiceServerErrorSLOViolation: errors for {{ $labels.env }} "
                       "are at {{ $value | humanizePercentage }}. See https://example.org/x",
        "grafana_panel_id": "2278903563",
    },
    "expr": 'sum by (env) (rate(registry_http_requests_total{code=~"5..", job="registry"}[5m])) > 0.1',
}


def test_split_identifier() -> None:
    assert split_identifier("KubePodCrashLooping") == "Kube Pod Crash Looping"
    assert split_identifier("PostgreSQL_ReplicationLag") == "Postgre SQL Replication Lag"


def test_expression_terms_keep_metrics_and_values_not_operators() -> None:
    terms = expression_terms(ALERT["expr"])
    assert "registry_http_requests_total" in terms and "registry" in terms
    assert not {"sum", "rate", "by"} & set(terms)


def test_with_name_uses_labels_annotations_and_expression() -> None:
    q = build_alert_query(ALERT)
    assert q.lexical.startswith("RegistryServiceServerErrorSLOViolation Registry Service Server")
    assert "registry_http_requests_total" in q.lexical
    assert "{{" not in q.dense and "https://" not in q.lexical and "2278903563" not in q.lexical
    assert "pagerduty" not in q.lexical  # routing labels say nothing about the problem
    assert q.services == ("registry",) and q.alerts == ("RegistryServiceServerErrorSLOViolation",)
    assert q.resolve_services({"registry", "gitaly"}) == ("registry",)
    assert q.resolve_services({"gitaly"}) == ()


def test_without_name_scrubs_it_everywhere() -> None:
    q = build_alert_query(ALERT, include_name=False, include_labels=False, include_expr=False)
    text = (q.dense + q.lexical).lower()
    assert "registryserviceservererrorslov" not in text
    assert "registry_http_requests_total" not in text and q.alerts == ()
    assert q.services == ("registry",)  # stated in the annotation's own words
