// /metrics: the Prometheus text rendered from a status document (pure), then a live node's
// page checked by promtool, the Prometheus project's own linter.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <map>
#include <set>
#include <sstream>

#include "harness.hpp"
#include "http_client.hpp"
#include "metrics.hpp"

using vt::json;

namespace {
json sample_doc() {
  vac::LatencyHistogram h;
  for (double s : {0.0005, 0.003, 0.003, 0.2, 7.0}) h.observe(s);
  return {
      {"node",
       {{"name", "web1"},
        {"role", "master"},
        {"state", "active"},
        {"epoch", 4},
        {"healthy", true},
        {"state_s", 12.5},
        {"transitions", {{{"from", "passive"}, {"to", "starting"}, {"count", 2}}}}}},
      {"peer",
       {{"name", "web2"},
        {"state", "up"},
        {"linkd_restarts", 2},
        {"linkd_stalls", 1},
        {"timing_mismatch", "peer web2 runs heartbeat 20ms, dead_after 600ms; ..."}}},
      {"services",
       {{"app",
         {{"state", "up"}, {"ready", true}, {"restarts", 3}, {"last_exit", "signal 9 (Killed)"}}},
        {"we\"ird\\",
         {{"state", "down"}, {"ready", false}, {"restarts", 0}, {"last_exit", "exit 2"}}}}},
      {"probes",
       {{"content",
         {{"state", "passing"},
          {"ok_count", 7},
          {"warn_count", 1},
          {"fail_count", 0},
          {"latency_histogram", h.to_json()}}}}},
      {"control", {{"refused", {{"busy", 0}, {"permission", 2}}}}}};
}

// Every sample's family has HELP and TYPE before it; returns the families seen.
std::set<std::string> check_families(const std::string& page) {
  std::set<std::string> helped, typed;
  std::istringstream in(page);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0)
      helped.insert(line.substr(7, line.find(' ', 7) - 7));
    else if (line.rfind("# TYPE ", 0) == 0)
      typed.insert(line.substr(7, line.find(' ', 7) - 7));
    else {
      std::string name = line.substr(0, line.find_first_of("{ "));
      for (const char* suffix : {"_bucket", "_sum", "_count"})
        if (!typed.count(name) && name.size() > strlen(suffix) &&
            name.compare(name.size() - strlen(suffix), strlen(suffix), suffix) == 0)
          name.resize(name.size() - strlen(suffix));
      CHECK_MESSAGE(typed.count(name), line);
      CHECK_MESSAGE(helped.count(name), line);
    }
  }
  return typed;
}
}  // namespace

TEST_CASE("every family has HELP and TYPE; the values come from the document") {
  std::string page = vac::render_metrics(sample_doc(), json(), true);
  auto families = check_families(page);
  for (const char* f :
       {"vacataire_supervisor_up", "vacataire_node_info", "vacataire_node_state",
        "vacataire_node_epoch", "vacataire_node_transitions_total", "vacataire_node_state_seconds",
        "vacataire_service_up", "vacataire_service_restarts_total",
        "vacataire_service_last_exit_status", "vacataire_probe_state",
        "vacataire_probe_checks_total", "vacataire_probe_latency_seconds", "vacataire_peer_up",
        "vacataire_control_refused_total"})
    CHECK_MESSAGE(families.count(f), f);
  for (const char* line :
       {"vacataire_supervisor_up 1\n",
        "vacataire_node_info{node=\"web1\",role=\"master\"} 1\n",
        "vacataire_node_state{state=\"active\"} 1\n",
        "vacataire_node_state{state=\"passive\"} 0\n",
        "vacataire_node_epoch 4\n",
        "vacataire_node_state_seconds 12.5\n",
        "vacataire_node_transitions_total{from=\"passive\",to=\"starting\"} 2\n",
        "vacataire_service_restarts_total{service=\"app\"} 3\n",
        "vacataire_service_last_exit_status{service=\"app\"} 137\n",
        "vacataire_service_last_exit_status{service=\"we\\\"ird\\\\\"} 2\n",
        "vacataire_probe_checks_total{probe=\"content\",result=\"warn\"} 1\n",
        "vacataire_probe_latency_seconds_bucket{probe=\"content\",le=\"0.001\"} 1\n",
        "vacataire_probe_latency_seconds_bucket{probe=\"content\",le=\"0.005\"} 3\n",
        "vacataire_probe_latency_seconds_bucket{probe=\"content\",le=\"2.5\"} 4\n",
        "vacataire_probe_latency_seconds_bucket{probe=\"content\",le=\"+Inf\"} 5\n",
        "vacataire_probe_latency_seconds_count{probe=\"content\"} 5\n",
        "vacataire_control_refused_total{reason=\"permission\"} 2\n",
        "vacataire_peer_timing_mismatch 1\n",
        "vacataire_linkd_restarts_total 2\n",
        "vacataire_linkd_stalls_total 1\n"})
    CHECK_MESSAGE(page.find(line) != std::string::npos, line);
  CHECK(vac::render_metrics(sample_doc(), json(), false).find("vacataire_supervisor_up 0\n") !=
        std::string::npos);
}

TEST_CASE("linkd's live link statistics feed the peer families") {
  json stats = {{"links",
                 {{{"listen", "127.0.0.1:1"},
                   {"peer", "127.0.0.1:2"},
                   {"up", true},
                   {"rtt_ms", 0.25},
                   {"kernel_drops", 3}}}},
                {"counters", {{"accepted", 10}, {"bad_tag", 1}}}};
  std::string page = vac::render_metrics(sample_doc(), stats, true);
  check_families(page);
  CHECK(page.find("vacataire_peer_link_up{listen=\"127.0.0.1:1\",peer=\"127.0.0.1:2\"} 1\n") !=
        std::string::npos);
  CHECK(page.find("vacataire_peer_link_rtt_seconds{listen=\"127.0.0.1:1\",peer=\"127.0.0.1:2\"} "
                  "0.00025\n") != std::string::npos);
  CHECK(page.find("vacataire_peer_link_kernel_drops_total{listen=\"127.0.0.1:1\",peer=\"127.0.0.1:"
                  "2\"} 3\n") != std::string::npos);
  CHECK(page.find("vacataire_peer_datagrams_total{verdict=\"bad_tag\"} 1\n") != std::string::npos);
}

TEST_CASE("a broken document gives a smaller page, never an exception or a made-up sample") {
  for (json bad :
       {json(), json::array(), json{{"node", {{"epoch", "x"}, {"transitions", 3}}}},
        json{{"probes", {{"p", {{"latency_histogram", {{"le", {1}}, {"counts", {1}}}}}}}}}}) {
    std::string page = vac::render_metrics(bad, json(), true);
    check_families(page);
    CHECK(page.find("\nvacataire_node_epoch ") == std::string::npos);
    CHECK(page.find("_bucket") == std::string::npos);
  }
}

TEST_CASE("promtool check metrics passes on a live node's /metrics") {
  vt::Node n;
  int http = vt::free_port(SOCK_STREAM);
  n.service("app", "exec sleep 100000");
  n.configure({{"endpoints", {{"http", "127.0.0.1:" + std::to_string(http)}}},
               {"probes",
                {{"ok", {{"exec", {"/bin/true"}}, {"protocol", "exit"}, {"interval", "50ms"}}}}}});
  n.start();
  std::string page;
  REQUIRE_MESSAGE(vt::eventually([&] {
                    auto r = vt::http(http, "GET", "/metrics");
                    page = r.body;
                    return r.code == 200 &&
                           page.find("vacataire_service_up{service=\"app\"} 1\n") !=
                               std::string::npos &&
                           page.find("vacataire_probe_latency_seconds_count{probe=\"ok\"} 0") ==
                               std::string::npos &&
                           page.find("vacataire_probe_latency_seconds_count{probe=\"ok\"}") !=
                               std::string::npos;
                  }),
                  n.log());
  n.write("metrics.txt", page);
  auto r = vt::run_command({"/bin/sh", "-c", "promtool check metrics < " + n.path("metrics.txt")});
  CHECK_MESSAGE(r.code == 0, r.out, "\n", page);
  CHECK_MESSAGE(r.out.empty(), r.out);  // no lint complaints either
  check_families(page);
  CHECK(page.find("vacataire_node_state{state=\"active\"} 1\n") != std::string::npos);
  CHECK(page.find("vacataire_node_transitions_total{from=\"passive\",to=\"starting\"} 1\n") !=
        std::string::npos);
  CHECK(page.find("vacataire_service_up{service=\"app\"} 1\n") != std::string::npos);
  CHECK(page.find("vacataire_control_refused_total{reason=\"busy\"} 0\n") != std::string::npos);
  CHECK(n.stop() == 0);
}
