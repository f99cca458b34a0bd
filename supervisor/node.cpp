#include "node.hpp"

#include <algorithm>

namespace vac {

namespace {
bool serving_state(NodeState s) {
  return s == NodeState::active || s == NodeState::starting;
}
}  // namespace

const char* to_string(NodeState s) {
  switch (s) {
    case NodeState::passive:
      return "passive";
    case NodeState::starting:
      return "starting";
    case NodeState::active:
      return "active";
    case NodeState::stopping:
      return "stopping";
    case NodeState::failed:
      return "failed";
    case NodeState::maintenance:
      return "maintenance";
  }
  return "passive";
}

bool parse_node_state(const std::string& s, NodeState& out) {
  for (NodeState n : {NodeState::passive, NodeState::starting, NodeState::active,
                      NodeState::stopping, NodeState::failed, NodeState::maintenance})
    if (s == to_string(n)) return out = n, true;
  return false;
}

// Rule 8: failed and maintenance stick across restarts; anything else starts passive, since
// the services of a previous instance were stopped before this one began.
NodeCore::NodeCore(NodePolicy policy, NodeState persisted, uint64_t epoch, Time now)
    : policy_(policy),
      state_(persisted == NodeState::failed || persisted == NodeState::maintenance
                 ? persisted
                 : NodeState::passive),
      epoch_(epoch),
      reason_(state_ == NodeState::passive ? "starting up" : "kept from before the restart"),
      started_(now) {}

bool NodeCore::peer_serving() const {
  return peer_reachable_ && peer_ && serving_state(peer_->state);
}

bool NodeCore::peer_can_take_over() const {
  return peer_reachable_ && peer_ && peer_->state == NodeState::passive && peer_->healthy;
}

void NodeCore::set_state(NodeState s, const std::string& why, std::vector<Action>& out) {
  reason_ = why;
  if (s == state_) return;
  state_ = s;
  out.push_back({Action::persist, {}});
  out.push_back({Action::notify, {}});
}

// Epoch first, durably, then the services: a crash in between restarts passive with the
// higher epoch, which is safe.
void NodeCore::go_active(const std::string& why, std::vector<Action>& out) {
  uint64_t peer_epoch = peer_ ? peer_->epoch : 0;
  epoch_ = std::max(epoch_, peer_epoch) + 1;
  waiting_quiesce_ = false;
  failback_ = false;
  set_state(NodeState::starting, why, out);
  out.push_back({Action::start_services, {}});
}

void NodeCore::go_down(NodeState after, const std::string& why, std::vector<Action>& out) {
  after_stop_ = after;
  // The sticky target is what a restart in the middle of stopping must find.
  set_state(NodeState::stopping, why, out);
  out.push_back({Action::stop_services, {}});
}

std::vector<Action> NodeCore::handle(const Event& e, Time now) {
  std::vector<Action> out;
  auto send = [&](PeerMessage::Kind k) {
    PeerMessage m = heartbeat();
    m.kind = k;
    out.push_back({Action::send, m});
  };
  switch (e.kind) {
    case Event::tick:
      break;
    case Event::peer_message: {
      peer_reachable_ = peer_seen_ = true;
      peer_lost_while_active_ = false;
      peer_ = e.message;
      const PeerMessage& m = e.message;
      if (serving_state(m.state)) handed_over_ = false;  // the peer has taken the role
      if (m.kind == PeerMessage::takeover && state_ == NodeState::passive && healthy_)
        go_active("the peer handed over", out);
      if (m.kind == PeerMessage::quiesce) {
        if (serving_state(state_))
          go_down(NodeState::passive, "the peer asked to take over", out);
        else if (state_ != NodeState::stopping)
          send(PeerMessage::stopped);
        quiesce_reply_ = true;
      }
      if (m.kind == PeerMessage::stopped && waiting_quiesce_ && state_ == NodeState::passive)
        go_active("the peer stopped its services for us", out);
      break;
    }
    case Event::peer_lost:
      handed_over_ = false;
      if (peer_reachable_) unreachable_since_ = now;
      peer_reachable_ = false;
      if (peer_ && serving_state(peer_->state)) peer_lost_while_active_ = true;
      break;
    case Event::health:
      healthy_ = e.flag;
      break;
    case Event::witness:
      witness_ok_ = e.flag;
      break;
    case Event::services_up:
      if (state_ == NodeState::starting) set_state(NodeState::active, reason_, out);
      break;
    case Event::services_down:
      if (state_ == NodeState::stopping) {
        set_state(after_stop_, reason_, out);
        if (quiesce_reply_) send(PeerMessage::stopped);
        quiesce_reply_ = false;
      }
      break;
    case Event::op_takeover:
      refused_.clear();
      if (state_ == NodeState::failed || state_ == NodeState::maintenance)
        refused_ =
            std::string("this node is ") + to_string(state_) +
            (state_ == NodeState::failed ? "; run recover first" : "; end maintenance first");
      else if (serving_state(state_))
        refused_ = "this node is already active";
      else if (!healthy_)
        refused_ = "this node is unhealthy: a critical probe is failing";
      else if (state_ == NodeState::stopping)
        refused_ = "this node is stopping";
      else if (peer_serving()) {
        handed_over_ = false;
        waiting_quiesce_ = true;
        reason_ = "asked the peer to stop its services";
        send(PeerMessage::quiesce);
      } else {
        handed_over_ = false;
        go_active("operator takeover", out);
      }
      break;
    case Event::op_release:
      refused_.clear();
      if (!serving_state(state_))
        refused_ = "this node is not active";
      else if (!peer_can_take_over())
        refused_ = "no healthy passive peer to hand over to";
      else {
        send(PeerMessage::takeover);
        handed_over_ = true;
        go_down(NodeState::passive, "operator release: handed over to the peer", out);
      }
      break;
    case Event::op_recover:
      refused_.clear();
      if (state_ != NodeState::failed) {
        refused_ = "this node is not failed";
      } else {
        recovering_ = true;
        failback_ = e.flag || policy_.failback_auto;
        healthy_ = false;  // the probes are re-run; their fresh verdict decides
        reason_ = "recovering: waiting for the probes to pass";
      }
      break;
    case Event::op_maintenance_on:
      refused_.clear();
      if (state_ == NodeState::maintenance) break;
      if (state_ == NodeState::failed) {
        refused_ = "this node is failed; run recover first";
        break;
      }
      if (serving_state(state_)) {
        if (peer_can_take_over()) send(PeerMessage::takeover), handed_over_ = true;
        go_down(NodeState::maintenance, "operator maintenance", out);
      } else if (state_ == NodeState::stopping) {
        after_stop_ = NodeState::maintenance;
      } else {
        set_state(NodeState::maintenance, "operator maintenance", out);
      }
      break;
    case Event::op_maintenance_off:
      refused_.clear();
      if (state_ != NodeState::maintenance)
        refused_ = "this node is not in maintenance";
      else
        set_state(NodeState::passive, "maintenance ended", out);
      break;
  }
  evaluate(now, out);
  return out;
}

void NodeCore::evaluate(Time now, std::vector<Action>& out) {
  bool witness_reachable = !policy_.has_witness || witness_ok_;
  if (peer_reachable_ || witness_reachable) unreachable_since_ = now;

  if (state_ == NodeState::failed) {
    if (!recovering_ || !healthy_) return;
    recovering_ = false;
    set_state(NodeState::passive, "recovered: the probes pass", out);
  }

  if (state_ == NodeState::passive) {
    if (!healthy_) return;
    if (!policy_.has_peer) return go_active("single node", out);
    // Failback waits until the peer is heard: then, if it serves, it is asked to stop first.
    if (failback_ && peer_reachable_ && !waiting_quiesce_) {
      failback_ = false;
      if (serving_state(peer_->state)) {
        waiting_quiesce_ = true;
        reason_ = "failback: asked the peer to stop its services";
        PeerMessage m = heartbeat();
        m.kind = PeerMessage::quiesce;
        out.push_back({Action::send, m});
        return;
      }
    }
    if (waiting_quiesce_) {
      if (!peer_reachable_) go_active("the peer was lost while stopping for us", out);
      return;  // otherwise wait for its `stopped`
    }
    if (peer_reachable_) {
      if (serving_state(peer_->state) || peer_->state == NodeState::stopping) return;
      // Neither serves. The master takes the role; the standby only when the master cannot.
      bool peer_able = peer_->state == NodeState::passive && peer_->healthy;
      // Having just handed over, wait for the peer to take the role rather than reclaim it.
      if ((policy_.master && !handed_over_) || !peer_able)
        go_active(peer_able ? "both passive: the master serves"
                            : std::string("the peer cannot serve (") + to_string(peer_->state) +
                                  (peer_->healthy ? "" : ", unhealthy") + ")",
                  out);
      return;
    }
    // Rule 3: the peer is silent. Take over if it was serving, or was never heard since the
    // start-up grace, and the witness agrees this node is not the isolated one.
    bool grace_over = now - started_ >= policy_.startup_grace;
    if (!witness_reachable) return;
    if (peer_seen_ || grace_over)
      go_active(peer_seen_ ? "the peer was lost" : "no peer heard within the start-up grace", out);
    return;
  }

  if (state_ == NodeState::active || state_ == NodeState::starting) {
    // Rule 5: both serving after a partition healed: the lower epoch yields; on a tie, the
    // standby.
    if (peer_serving() && (peer_->epoch > epoch_ || (peer_->epoch == epoch_ && !policy_.master)))
      return go_down(NodeState::passive, "both active: yielding to the peer's higher epoch", out);
    // Rule 4: neither peer nor witness reachable for isolation_after: fence ourselves.
    if (policy_.has_peer && policy_.has_witness && !peer_reachable_ && !witness_ok_ &&
        now - unreachable_since_ >= policy_.isolation_after)
      return go_down(NodeState::passive, "isolated: neither the peer nor the witness answers", out);
    // Rule 1: unhealthy. Hand over if someone can take it; otherwise keep serving, degraded.
    if (!healthy_ && state_ == NodeState::active) {
      if (peer_can_take_over()) {
        PeerMessage m = heartbeat();
        m.kind = PeerMessage::takeover;
        out.push_back({Action::send, m});
        handed_over_ = true;
        return go_down(NodeState::failed, "a critical probe failed: handed over to the peer", out);
      }
      if (!policy_.has_peer || policy_.stop_without_peer) {
        if (policy_.has_peer)
          return go_down(NodeState::failed, "a critical probe failed (stop_without_peer)", out);
        reason_ = "unhealthy, and no peer to take over: still serving";
        return;
      }
      reason_ = "unhealthy, but no healthy passive peer can take over: still serving";
    }
  }
}

}  // namespace vac
