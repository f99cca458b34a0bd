#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

#include "harness.hpp"
#include "node_store.hpp"

using namespace vac;

TEST_CASE("the node record round-trips; missing means a first start") {
  vt::Node d;
  std::string note, err;
  NodeRecord r = load_node_record(d.dir, note);
  CHECK(r.state == NodeState::passive);
  CHECK(r.epoch == 0);
  CHECK(note == "no node record yet: first start");
  REQUIRE(save_node_record(d.dir, {NodeState::failed, 42}, err));
  r = load_node_record(d.dir, note);
  CHECK(note.empty());
  CHECK(r.state == NodeState::failed);
  CHECK(r.epoch == 42);
}

TEST_CASE("a corrupt record is reported and read conservatively: failed, epoch kept") {
  vt::Node d;
  std::string note, err;
  REQUIRE(save_node_record(d.dir, {NodeState::passive, 7}, err));
  REQUIRE(save_node_record(d.dir, {NodeState::passive, 8}, err));
  d.write("node.json", "{\"state\": \"act");
  NodeRecord r = load_node_record(d.dir, note);
  CHECK(r.state == NodeState::failed);
  CHECK(r.epoch == 7);  // from the previous record
  CHECK(note.find("node.json is corrupt (not a JSON object)") != std::string::npos);
  d.write("node.json", "{\"state\": \"boss\", \"epoch\": 1}");
  r = load_node_record(d.dir, note);
  CHECK(r.state == NodeState::failed);
  CHECK(note.find("no valid \"state\"") != std::string::npos);
}

TEST_CASE("kill -9 while writing never leaves a torn record") {
  vt::Node d;
  for (int round = 0; round < 20; ++round) {
    pid_t writer = fork();
    if (writer == 0) {
      std::string err;
      for (uint64_t e = 1;; ++e)
        save_node_record(d.dir, {e % 2 ? NodeState::failed : NodeState::maintenance, e}, err);
    }
    // Let it write a varying number of records, then kill it mid-flight.
    vt::eventually([&] { return vt::read_file(d.path("node.json")).size() > 0; }, 5);
    usleep(static_cast<useconds_t>(1000 + round * 700));
    kill(writer, SIGKILL);
    waitpid(writer, nullptr, 0);
    std::string note;
    NodeRecord r = load_node_record(d.dir, note);
    CHECK_MESSAGE(note.empty(), note);
    CHECK(r.epoch > 0);
    CHECK((r.state == (r.epoch % 2 ? NodeState::failed : NodeState::maintenance)));
  }
}

TEST_CASE("an epoch out of range is read as corrupt, never wrapped") {
  vt::Node d;
  std::string note, err;
  REQUIRE(save_node_record(d.dir, {NodeState::passive, 5}, err));
  REQUIRE(save_node_record(d.dir, {NodeState::passive, 6}, err));
  d.write("node.json", "{\"state\": \"passive\", \"epoch\": 18446744073709551615}");
  NodeRecord r = load_node_record(d.dir, note);
  CHECK(r.state == NodeState::failed);
  CHECK(r.epoch == 5);
  CHECK(note.find("epoch 18446744073709551615 is out of range") != std::string::npos);
}

TEST_CASE("a record that cannot be written says where and why") {
  vt::Node d;
  d.write("not-a-dir", "x");
  std::string err;
  CHECK_FALSE(save_node_record(d.path("not-a-dir"), {NodeState::failed, 3}, err));
  CHECK(err.find("cannot write " + d.path("not-a-dir") + "/node.json.tmp") != std::string::npos);
  CHECK(err.find("Not a directory") != std::string::npos);
}
