// Package deploy holds what an operator runs beside weft: the Grafana
// dashboard (grafana/weft.json), Grafana provisioning for it
// (grafana/provisioning/) and the Prometheus scrape configuration for the
// network of docker-compose.yml (prometheus/prometheus.yml). It has no code;
// its tests check every metric the dashboard queries against what real
// weft processes serve, and the scrape jobs against the compose services.
package deploy
