#include "controller/task_scheduler.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <queue>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "controller/schemes.hpp"
#include "proto/messages.hpp"
#include "proto/peek.hpp"
#include "proto/poller.hpp"
#include "proto/wire.hpp"

namespace ipcpp::controller {
namespace {

using SteadyClock = std::chrono::steady_clock;
using IdSet = std::unordered_set<std::string>;

// What the scheduler remembers of a finished task, for the dependencies of later ones.
struct Outcome {
  static constexpr std::uint32_t kNowhere = ~std::uint32_t{0};
  bool success = false;
  std::uint32_t engine = kNowhere;  // the engine's slot (see TaskScheduler::slot_of); kNowhere
                                    // for a failure the scheduler raised itself
};

// The outcomes of finished tasks, bounded: beyond `limit` the oldest are forgotten, except
// those a task still in the scheduler depends on (pinned). One entry per task replaces the
// reference's sets of all, completed and failed ids, destinations and per-engine outcomes,
// which grow for as long as the controller runs.
class FinishedTasks {
 public:
  explicit FinishedTasks(std::size_t limit) : limit_(std::max<std::size_t>(limit, 1)) {}

  const Outcome* find(const std::string& id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &it->second;
  }

  void add(const std::string& id, Outcome outcome) {
    auto [it, inserted] = by_id_.try_emplace(id, outcome);
    if (!inserted) {
      it->second = outcome;
      return;
    }
    order_.push_back(&it->first);
    // Forget the oldest, skipping (and keeping) those still depended on.
    for (std::size_t turns = order_.size(); by_id_.size() > limit_ && turns > 0; --turns) {
      const std::string* oldest = order_.front();
      order_.pop_front();
      if (pins_.contains(*oldest)) {
        order_.push_back(oldest);
        continue;
      }
      by_id_.erase(*oldest);
    }
  }

  // A task in the scheduler depends on `id`: keep its outcome while it does.
  void pin(const std::string& id) { ++pins_[id]; }
  void unpin(const std::string& id) {
    if (auto it = pins_.find(id); it != pins_.end() && --it->second == 0) pins_.erase(it);
  }

  std::size_t limit() const { return limit_; }

 private:
  std::size_t limit_;
  std::unordered_map<std::string, Outcome> by_id_;
  std::deque<const std::string*> order_;  // keys of by_id_, oldest first (node keys stay put)
  std::unordered_map<std::string, int> pins_;
};

// A dependency as the Dependency class of ipyparallel: a set of msg_ids and how they count.
struct DepSet {
  IdSet ids;
  bool all = true;
  bool success = true;
  bool failure = false;

  bool empty() const { return ids.empty(); }

  // Whether `id` finished the way that counts (on `engine` only, unless kNowhere).
  bool counts(const FinishedTasks& done, const std::string& id,
              std::uint32_t engine = Outcome::kNowhere) const {
    const Outcome* o = done.find(id);
    if (o == nullptr) return false;
    if (engine != Outcome::kNowhere && o->engine != engine) return false;
    return o->success ? success : failure;
  }
  // Met: all (or any) of the ids finished the way that counts (there, for `follow`).
  bool check(const FinishedTasks& done, std::uint32_t engine = Outcome::kNowhere) const {
    if (ids.empty()) return true;
    auto met = [&](const std::string& id) { return counts(done, id, engine); };
    if (all) return std::all_of(ids.begin(), ids.end(), met);
    return std::any_of(ids.begin(), ids.end(), met);
  }
  // Unreachable: all=true and one id finished the wrong way, or all=false and every id did.
  bool unreachable(const FinishedTasks& done) const {
    if (ids.empty()) return false;
    auto wrong = [&](const std::string& id) {
      const Outcome* o = done.find(id);
      return o != nullptr && !(o->success ? success : failure);
    };
    if (all) return std::any_of(ids.begin(), ids.end(), wrong);
    return std::all_of(ids.begin(), ids.end(), wrong);
  }
};

DepSet to_depset(const proto::Dependency& d) {
  return DepSet{IdSet(d.dependencies.begin(), d.dependencies.end()), d.all, d.success, d.failure};
}

struct Engine {
  std::string uuid;
  std::int64_t id = -1;
  std::uint32_t slot = Outcome::kNowhere;  // its index in TaskScheduler::slots_
  int load = 0;
  IdSet pending;  // msg_ids running (or sent) there
};

struct Job {
  std::string msg_id;
  std::uint64_t seq = 0;
  std::vector<zmq::message_t> frames;  // as received: [client route..., <IDS|MSG>, ...]
  std::size_t route_size = 1;          // how many of the frames are the client's route
  zmq::message_t header;               // the request's header frame (shared with `frames`)
  IdSet targets;                       // engine uuids; empty: any engine
  IdSet blacklist;
  DepSet after;
  DepSet follow;
  std::int64_t retries = 0;
  double timeout = 0;  // seconds waiting in the queue; 0: none
  std::optional<SteadyClock::time_point> deadline;
  bool queued = false;
  std::list<Job*>::iterator queue_pos;
  std::string engine;   // where it runs, while it runs
  bool pinned = false;  // its dependencies' outcomes are pinned in the history
};

class TaskScheduler {
 public:
  TaskScheduler(TaskSockets sockets, TaskSchedulerOptions options,
                proto::SessionOptions session_options, Logger log)
      : s_(std::move(sockets)),
        hwm_(options.hwm),
        scheme_(make_scheme(options.scheme)),
        session_(std::move(session_options)),
        log_(std::move(log)),
        done_(options.dependency_history) {}

  void run() {
    // One poll(2) per wait (proto/poller.hpp).
    proto::Poller poller;
    const std::size_t notification = poller.add(s_.notification);
    const std::size_t engine = poller.add(s_.engine.fd());
    const std::size_t client = poller.add(s_.client.fd());
    const std::size_t resubmit = poller.add(s_.resubmit);
    while (true) {
      // Messages already read (a batch left them) must not wait for the next wake-up.
      const bool waiting = s_.engine.waiting() > 0 || s_.client.waiting() > 0;
      if (sent_on_resubmit_) {
        poller.touched(resubmit);  // a send may have taken the signal of a message in
        sent_on_resubmit_ = false;
      }
      poller.wait(waiting ? std::chrono::milliseconds(0) : poll_timeout());
      // What this turn sends leaves at its end, one write per peer (proto::WriteBatch).
      proto::WriteBatch to_engines(s_.engine);
      proto::WriteBatch to_clients(s_.client);
      expire_timeouts();
      process_finished();
      if (poller.readable(notification)) {
        read_notifications();
        poller.emptied(notification);  // read until nothing was left
      }
      // A readable descriptor may also mean that queued output can be written or a peer
      // connects: receive() does that too.
      if (poller.readable(engine) || s_.engine.waiting() > 0) {
        for (int i = 0; i < 256; ++i) {
          auto frames = s_.engine.receive();
          if (frames.empty()) break;
          on_result(std::move(frames));
          process_finished();
        }
      }
      if (poller.readable(client) || s_.client.waiting() > 0 || poller.readable(resubmit)) {
        // Notifications first, so that a task for a just-registered engine finds it.
        read_notifications();
        poller.emptied(notification);
        for (int i = 0; i < 256; ++i) {
          auto frames = s_.client.receive();
          if (frames.empty()) break;
          on_submission(std::move(frames));
          process_finished();
        }
        for (int i = 0; i < 256; ++i) {
          auto frames = proto::recv_frames(s_.resubmit, zmq::recv_flags::dontwait);
          if (frames.empty()) {
            poller.emptied(resubmit);
            break;
          }
          on_submission(std::move(frames));
          process_finished();
        }
      }
    }
  }

 private:
  // ---- engines --------------------------------------------------------------------------

  void read_notifications() {
    while (true) {
      auto frames = proto::recv_frames(s_.notification, zmq::recv_flags::dontwait);
      if (frames.empty()) return;
      const auto event = roster_.apply(std::move(frames));
      if (event.change == EngineRoster::Change::kRegistered) add_engine(event.uuid, event.id);
      if (event.change == EngineRoster::Change::kUnregistered) remove_engine(event.uuid);
    }
  }

  void add_engine(const std::string& uuid, std::int64_t id) {
    if (engines_.contains(uuid)) return;
    auto engine = std::make_unique<Engine>();
    engine->uuid = uuid;
    engine->id = id;
    engine->slot = slot_of(uuid);
    // Newest first, as the reference: on an idle cluster the new engine gets the next task.
    // (push_back and rotate rather than insert at begin(): g++ 12 -O3 warns falsely on that.)
    order_.push_back(engine.get());
    std::rotate(order_.rbegin(), order_.rbegin() + 1, order_.rend());
    engines_.emplace(uuid, std::move(engine));
    log_->debug("task: engine {} ({}) added", id, uuid);
    schedule_queue();
    process_finished();
  }

  void remove_engine(const std::string& uuid) {
    auto it = engines_.find(uuid);
    if (it == engines_.end()) return;
    std::unique_ptr<Engine> engine = std::move(it->second);
    engines_.erase(it);
    order_.erase(std::find(order_.begin(), order_.end(), engine.get()));
    std::vector<Job*> stranded;
    for (const auto& msg_id : engine->pending) {
      if (auto j = jobs_.find(msg_id); j != jobs_.end()) stranded.push_back(j->second.get());
    }
    std::sort(stranded.begin(), stranded.end(),
              [](const Job* a, const Job* b) { return a->seq < b->seq; });
    log_->info("task: engine {} ({}) removed with {} task(s) outstanding", engine->id, uuid,
               stranded.size());
    for (Job* job : stranded) {
      const std::string evalue = "Engine " + std::to_string(engine->id) + " ('" + uuid +
                                 "') died while running task '" + job->msg_id + "'";
      job->engine.clear();
      if (job->retries > 0 && can_retry(*job, uuid)) {
        --job->retries;
        job->blacklist.insert(uuid);
        log_->info("task: retrying {} elsewhere ({} retries left)", job->msg_id, job->retries);
        reschedule(*job);
      } else {
        fail(*job, "EngineError", evalue, uuid);
      }
    }
    lost_ids_[uuid] = engine->id;
    // Tasks that could only run there are now impossible; others may fit elsewhere.
    fail_orphaned_targets();
    process_finished();
    schedule_queue();
    process_finished();
  }

  bool has_capacity(const Engine& e) const { return hwm_ == 0 || e.load < hwm_; }
  bool any_capacity() const {
    return std::any_of(order_.begin(), order_.end(),
                       [this](const Engine* e) { return has_capacity(*e); });
  }

  // ---- submission -----------------------------------------------------------------------

  void on_submission(std::vector<zmq::message_t>&& frames) {
    auto wire = session_.authenticate(std::move(frames));
    if (!wire) {
      log_->warn("task: dropped a task from a client: {}", wire.error().reason);
      return;
    }
    if (wire->identities.empty()) {
      log_->warn("task: dropped a task without a client routing frame");
      return;
    }
    // The msg_id is all the header is needed for: read it without parsing when possible.
    std::string msg_id;
    if (const auto peeked = proto::peek_string(view(wire->header), "msg_id"); peeked.found()) {
      msg_id = peeked.value;
    } else if (auto header = parse_json_frame(wire->header);
               header && header->contains("msg_id") && (*header)["msg_id"].is_string()) {
      msg_id = (*header)["msg_id"].get<std::string>();
    }
    // The tasks of one map carry the same metadata text: it is parsed and decoded once.
    const std::string_view metadata_text = view(wire->metadata);
    const bool same_metadata = last_metadata_ && metadata_text == last_metadata_text_;
    std::optional<nlohmann::json> metadata;
    if (!same_metadata) metadata = parse_json_frame(wire->metadata);
    if (msg_id.empty() || (!same_metadata && !metadata)) {
      log_->warn(
          "task: dropped a task whose header or metadata is not a JSON object with a "
          "msg_id");
      return;
    }
    auto job = std::make_unique<Job>();
    job->msg_id = std::move(msg_id);
    job->seq = next_seq_++;
    job->header.copy(wire->header);
    job->route_size = wire->identities.size();
    job->frames = proto::join(std::move(wire.value()));

    std::vector<zmq::message_t> copy;
    copy.reserve(job->frames.size() + 1);
    copy.push_back(frame("intask"));
    for (auto& f : job->frames)
      copy.push_back(share(f));
    proto::send_frames(s_.monitor, std::move(copy));

    if (jobs_.contains(job->msg_id)) {
      log_->warn("task: dropped task {}: a task with that msg_id is already pending", job->msg_id);
      return;
    }
    Job& j = *job;
    jobs_.emplace(j.msg_id, std::move(job));

    if (!same_metadata) {
      auto decoded = proto::decode_content<proto::TaskMetadata>(*metadata, "task metadata");
      if (!decoded) {
        fail(j, "ValueError", decoded.error().reason);
        return;
      }
      last_metadata_ = std::move(decoded).value();
      last_metadata_text_.assign(metadata_text);
    }
    const proto::TaskMetadata* md = &*last_metadata_;
    j.targets.insert(md->targets.begin(), md->targets.end());
    j.retries = std::max<std::int64_t>(0, md->retries);
    j.timeout = md->timeout.value_or(0.0);
    j.after = to_depset(md->after);
    j.follow = to_depset(md->follow);
    if (!j.after.success && !j.after.failure) {
      fail(j, "ValueError", "dependency 'after' must count successes, failures or both");
      return;
    }
    if (!j.follow.success && !j.follow.failure) {
      fail(j, "ValueError", "dependency 'follow' must count successes, failures or both");
      return;
    }
    // Drop what is already satisfied from an all=true `after`.
    if (j.after.all) {
      std::erase_if(j.after.ids, [&](const std::string& id) { return j.after.counts(done_, id); });
    }
    for (const DepSet* dep : {&j.after, &j.follow}) {
      if (dep->empty()) continue;
      for (const auto& id : dep->ids) {
        if (id == j.msg_id || (!jobs_.contains(id) && done_.find(id) == nullptr)) {
          fail(j, "InvalidDependency",
               "task " + j.msg_id + " depends on '" + id +
                   "', which is not a task of this scheduler" +
                   (id == j.msg_id ? " (it is the task itself)"
                                   : " (or one of the tasks that finished before the last " +
                                         std::to_string(done_.limit()) +
                                         ", which it forgets: --dependency-history)"));
          return;
        }
      }
      if (dep->unreachable(done_)) {
        fail(j, "ImpossibleDependency",
             "task " + j.msg_id + " depends on tasks that ended the wrong way");
        return;
      }
    }
    if (j.after.check(done_)) j.after.ids.clear();
    // Their outcomes are kept for as long as this task is here (a retry checks `follow`
    // again).
    for (const DepSet* dep : {&j.after, &j.follow}) {
      for (const auto& id : dep->ids)
        done_.pin(id);
    }
    j.pinned = true;
    if (j.after.empty()) {
      reschedule(j);
    } else {
      enqueue(j);
    }
  }

  // ---- running --------------------------------------------------------------------------

  // Sends the job to an engine if one can take it now. Returns true when sent. May fail the
  // job (ImpossibleDependency), in which case it no longer exists.
  bool try_run(Job& job) {
    candidates_.clear();
    loads_.clear();
    for (Engine* e : order_) {
      if (!has_capacity(*e)) continue;
      if (job.blacklist.contains(e->uuid)) continue;
      if (!job.targets.empty() && !job.targets.contains(e->uuid)) continue;
      if (!job.follow.check(done_, e->slot)) continue;
      candidates_.push_back(e);
      loads_.push_back(e->load);
    }
    if (candidates_.empty()) {
      if (!job.follow.empty() && job.follow.all) {
        std::unordered_set<std::uint32_t> where;
        for (const auto& id : job.follow.ids) {
          const Outcome* o = done_.find(id);
          if (o != nullptr && (o->success ? job.follow.success : job.follow.failure) &&
              o->engine != Outcome::kNowhere) {
            where.insert(o->engine);
          }
        }
        if (where.size() > 1) {
          fail(job, "ImpossibleDependency",
               "task " + job.msg_id + " follows tasks that ran on different engines");
          return false;
        }
      }
      if (!job.targets.empty()) {
        bool possible = false;
        for (const auto& t : job.targets) {
          if (!job.blacklist.contains(t) && engines_.contains(t)) possible = true;
        }
        if (!possible) {
          fail(job, "ImpossibleDependency",
               "task " + job.msg_id + ": none of its target engines is registered" +
                   (job.blacklist.empty() ? "" : " and has not already failed it"));
          return false;
        }
      }
      return false;
    }
    Engine* engine = candidates_[scheme_->pick(loads_)];
    send(job, *engine);
    return true;
  }

  void send(Job& job, Engine& engine) {
    if (job.queued) {
      queue_.erase(job.queue_pos);
      job.queued = false;
    }
    job.deadline.reset();
    std::vector<zmq::message_t> out;
    out.reserve(job.frames.size() + 1);
    out.push_back(frame(engine.uuid));
    for (auto& f : job.frames)
      out.push_back(share(f));
    s_.engine.send(std::move(out));
    ++engine.load;
    engine.pending.insert(job.msg_id);
    job.engine = engine.uuid;
    // Least recently used first: the engine that just got a task goes to the back.
    auto pos = std::find(order_.begin(), order_.end(), &engine);
    std::rotate(pos, pos + 1, order_.end());

    // The destination, for the hub: an internal message, neither signed nor JSON.
    std::vector<zmq::message_t> destination;
    destination.push_back(frame("tracktask"));
    destination.push_back(frame(job.msg_id));
    destination.push_back(frame(engine.uuid));
    proto::send_frames(s_.monitor, std::move(destination));
  }

  void enqueue(Job& job) {
    if (job.queued) return;
    job.queue_pos = queue_.insert(queue_.end(), &job);
    job.queued = true;
    for (const DepSet* dep : {&job.after, &job.follow}) {
      for (const auto& id : dep->ids) {
        if (!all_done(id)) graph_[id].insert(job.msg_id);
      }
    }
    if (job.timeout > 0 && !job.deadline) {
      job.deadline = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                              std::chrono::duration<double>(job.timeout));
      deadlines_.push({*job.deadline, job.msg_id});
    }
  }

  // Runs the job now if an engine can take it, else queues it (unless it was failed).
  void reschedule(Job& job) {
    const std::string msg_id = job.msg_id;  // try_run may fail and free the job
    if (!try_run(job) && jobs_.contains(msg_id)) enqueue(job);
  }

  bool all_done(const std::string& id) const { return done_.find(id) != nullptr; }

  // Whether another registered engine could still run the job after `failed_on` failed it.
  bool can_retry(const Job& job, const std::string& failed_on) const {
    for (const auto& [uuid, e] : engines_) {
      if (uuid == failed_on || job.blacklist.contains(uuid)) continue;
      if (!job.targets.empty() && !job.targets.contains(uuid)) continue;
      return true;
    }
    return false;
  }

  // Re-examines queued jobs: all of them, or only those waiting on `finished`.
  void schedule_queue(const std::string* finished = nullptr) {
    // Runs `job` if it can. Returns false when no engine can take more work.
    auto consider = [this](Job& job) {
      if (job.after.unreachable(done_) || job.follow.unreachable(done_)) {
        fail(job, "ImpossibleDependency",
             "task " + job.msg_id + " depends on tasks that ended the wrong way");
        return true;
      }
      if (!job.after.check(done_)) return true;
      if (!any_capacity()) return false;
      try_run(job);
      return true;
    };
    if (finished == nullptr) {
      // The whole queue, in order, without copying it: handling a job removes at most that
      // job from the queue (failures release their dependents later, through finished_).
      // Stops as soon as no engine can take more, so a long queue costs nothing per result.
      for (auto it = queue_.begin(); it != queue_.end();) {
        Job& job = **it;
        ++it;
        if (!consider(job)) break;
      }
      return;
    }
    auto node = graph_.extract(*finished);
    if (node.empty()) return;
    std::vector<const Job*> waiting;
    for (const auto& id : node.mapped()) {
      if (auto it = jobs_.find(id); it != jobs_.end() && it->second->queued) {
        waiting.push_back(it->second.get());
      }
    }
    std::sort(waiting.begin(), waiting.end(),
              [](const Job* a, const Job* b) { return a->seq < b->seq; });
    std::vector<std::string> ids;
    ids.reserve(waiting.size());
    for (const Job* job : waiting)
      ids.push_back(job->msg_id);
    for (const auto& id : ids) {
      auto it = jobs_.find(id);  // an earlier job of this pass may have failed this one
      if (it == jobs_.end() || !it->second->queued) continue;
      consider(*it->second);
    }
  }

  // Fails queued jobs none of whose targets can run them any more (their engines are gone).
  void fail_orphaned_targets() {
    std::vector<std::string> orphaned;
    for (const Job* job : queue_) {
      if (job->targets.empty()) continue;
      const bool possible =
          std::any_of(job->targets.begin(), job->targets.end(), [&](const std::string& t) {
            return !job->blacklist.contains(t) && engines_.contains(t);
          });
      if (!possible) orphaned.push_back(job->msg_id);
    }
    for (const auto& id : orphaned) {
      if (auto it = jobs_.find(id); it != jobs_.end()) {
        fail(*it->second, "ImpossibleDependency",
             "task " + id + ": none of its target engines is registered any more");
      }
    }
  }

  // Releases the jobs waiting on tasks that finished, until nothing more changes.
  void process_finished() {
    while (!finished_.empty()) {
      const std::string id = std::move(finished_.front());
      finished_.pop_front();
      schedule_queue(&id);
    }
  }

  // ---- results --------------------------------------------------------------------------

  void on_result(std::vector<zmq::message_t>&& frames) {
    auto wire = session_.authenticate(std::move(frames));
    if (!wire) {
      log_->warn("task: dropped a reply from an engine: {}", wire.error().reason);
      return;
    }
    if (wire->identities.size() < 2) {
      log_->warn("task: dropped a reply without a client routing frame");
      return;
    }
    const std::string uuid(view(wire->identities[0]));
    std::string msg_id;
    if (const auto peeked = proto::peek_string(view(wire->parent_header), "msg_id");
        peeked.found()) {
      msg_id = peeked.value;
    } else if (auto parent = parse_json_frame(wire->parent_header);
               parent && parent->contains("msg_id") && (*parent)["msg_id"].is_string()) {
      msg_id = (*parent)["msg_id"].get<std::string>();
    }
    // Of the metadata, dependencies_met and status are all that is needed: read them without
    // parsing when possible.
    bool dependencies_met = true;
    std::string status;
    bool metadata_ok = read_reply_metadata(view(wire->metadata), dependencies_met, status);
    if (msg_id.empty() || !metadata_ok) {
      log_->warn(
          "task: dropped a reply from '{}': its parent or metadata is not a JSON object "
          "with a msg_id",
          printable(uuid));
      return;
    }
    Engine* engine = nullptr;
    if (auto e = engines_.find(uuid); e != engines_.end()) engine = e->second.get();
    const bool was_full = engine != nullptr && !has_capacity(*engine);
    if (engine != nullptr && engine->pending.erase(msg_id) > 0) --engine->load;

    auto it = jobs_.find(msg_id);
    if (it == jobs_.end() || it->second->engine != uuid) {
      log_->info(
          "task: dropped a reply to {} from '{}': that task is not running there (it "
          "was failed or moved when the engine was lost)",
          msg_id, printable(uuid));
      if (was_full) schedule_queue();
      return;
    }
    Job& job = *it->second;
    job.engine.clear();
    if (status.empty()) {
      auto content = parse_json_frame(wire->content);
      status = content ? content->value("status", "ok") : "error";
    }
    const bool success = status == "ok";
    if (!dependencies_met || (!success && job.retries > 0 && can_retry(job, uuid))) {
      if (dependencies_met) --job.retries;
      job.blacklist.insert(uuid);
      log_->info("task: {} {} on '{}'; trying another engine", msg_id,
                 dependencies_met ? "failed" : "had unmet dependencies", printable(uuid));
      if (!job.targets.empty() &&
          std::all_of(job.targets.begin(), job.targets.end(),
                      [&](const std::string& t) { return job.blacklist.contains(t); })) {
        fail(job, "ImpossibleDependency", "task " + msg_id + ": every target engine has failed it");
      } else {
        reschedule(job);
      }
      if (was_full) schedule_queue();
      return;
    }

    // The final reply: to the client, and to the hub.
    auto& ids = wire->identities;
    std::swap(ids[0], ids[1]);
    auto out = proto::join(std::move(wire.value()));
    std::vector<zmq::message_t> copy;
    copy.reserve(out.size() + 1);
    copy.push_back(frame("outtask"));
    for (auto& f : out)
      copy.push_back(share(f));
    finish(job, success, uuid);
    // The engine's next task leaves before this reply is passed on: when many replies arrive
    // together (a wave of equal tasks ending), each engine waits less for its next one.
    if (was_full) schedule_queue();
    // The hub's copy first: once a client has a reply, the hub knows of it (a query that
    // follows at once finds the record).
    proto::send_frames(s_.monitor, std::move(copy));
    to_client(std::move(out));
  }

  // A reply's dependencies_met (default true) and status (default ""): false when the
  // metadata is not a JSON object.
  static bool read_reply_metadata(std::string_view text, bool& dependencies_met,
                                  std::string& status) {
    using Status = proto::Peeked::Status;
    static constexpr std::string_view kKeys[] = {"dependencies_met", "status"};
    std::array<proto::Peeked, 2> raw;
    proto::peek_raw(text, kKeys, raw);  // one scan for both
    const proto::Peeked& met = raw[0];
    const proto::Peeked said = proto::as_string(raw[1]);
    if ((met.status == Status::kAbsent ||
         (met.found() && (met.value == "true" || met.value == "false"))) &&
        said.status != Status::kUnknown) {
      dependencies_met = met.status == Status::kAbsent || met.value == "true";
      status = said.found() ? std::string(said.value) : std::string();
      return true;
    }
    auto parsed = parse_json_frame(zmq::message_t(text.data(), text.size()));
    if (!parsed) return false;
    const auto met_it = parsed->find("dependencies_met");
    dependencies_met = met_it == parsed->end() || !met_it->is_boolean() || met_it->get<bool>();
    const auto it = parsed->find("status");
    status = it != parsed->end() && it->is_string() ? it->get<std::string>() : std::string();
    return true;
  }

  // A reply goes back the way its request came: a client's TCP connection, or the hub.
  void to_client(std::vector<zmq::message_t>&& frames) {
    if (!frames.empty() && view(frames.front()) == kResubmitId) {
      proto::send_frames(s_.resubmit, std::move(frames));
      sent_on_resubmit_ = true;
    } else {
      s_.client.send(std::move(frames));
    }
  }

  // Records the outcome, forgets the job and releases what waited on it.
  void finish(Job& job, bool success, const std::string& engine_uuid) {
    const std::string msg_id = job.msg_id;
    if (job.queued) queue_.erase(job.queue_pos);
    if (job.pinned) {
      for (const DepSet* dep : {&job.after, &job.follow}) {
        for (const auto& id : dep->ids)
          done_.unpin(id);
      }
    }
    done_.add(msg_id,
              Outcome{success, engine_uuid.empty() ? Outcome::kNowhere : slot_of(engine_uuid)});
    jobs_.erase(msg_id);
    finished_.push_back(msg_id);
  }

  // Replies to the client with an error the scheduler raises itself, then finishes the job
  // as failed.
  void fail(Job& job, std::string_view ename, const std::string& evalue,
            const std::string& engine_uuid = {}) {
    log_->info("task: {} failed: {}: {}", job.msg_id, ename, evalue);
    nlohmann::json metadata = {{"status", "error"}, {"dependencies_met", true}};
    if (!engine_uuid.empty()) {
      // The engine goes in the metadata only: the Python client looks an error's
      // engine_info up among the registered engines, and this one is gone.
      metadata["engine"] = engine_uuid;
      metadata["engine_info"] = {{"engine_uuid", engine_uuid},
                                 {"engine_id", roster_id(engine_uuid)}};
    }
    std::vector<zmq::message_t> route;
    for (std::size_t i = 0; i < job.route_size; ++i)
      route.push_back(share(job.frames[i]));
    const auto request_type = proto::peek_string(view(job.header), "msg_type");
    const std::string type =
        reply_type(request_type.found() ? std::string(request_type.value) : "apply_request");
    auto reply =
        session_.build(std::move(route), type, error_content(ename, evalue), job.header, metadata);
    std::vector<zmq::message_t> copy;
    copy.reserve(reply.size() + 1);
    copy.push_back(frame("outtask"));
    for (auto& f : reply)
      copy.push_back(share(f));
    // The hub's copy first: once a client has a reply, the hub knows of it (a query that
    // follows at once finds the record).
    proto::send_frames(s_.monitor, std::move(copy));
    to_client(std::move(reply));
    // A failure the scheduler produced did not run anywhere: no destination for `follow`.
    finish(job, false, {});
  }

  std::uint32_t slot_of(const std::string& uuid) {
    auto [it, added] = slot_by_uuid_.try_emplace(uuid, static_cast<std::uint32_t>(slots_.size()));
    if (added) slots_.push_back(uuid);
    return it->second;
  }

  std::int64_t roster_id(const std::string& uuid) const {
    if (auto e = engines_.find(uuid); e != engines_.end()) return e->second->id;
    return lost_ids_.contains(uuid) ? lost_ids_.at(uuid) : -1;
  }

  // ---- timeouts -------------------------------------------------------------------------

  std::chrono::milliseconds poll_timeout() const {
    if (deadlines_.empty()) return std::chrono::milliseconds(-1);
    const auto left = deadlines_.top().first - SteadyClock::now();
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::ceil<std::chrono::milliseconds>(left));
  }

  void expire_timeouts() {
    const auto now = SteadyClock::now();
    while (!deadlines_.empty() && deadlines_.top().first <= now) {
      const std::string msg_id = deadlines_.top().second;
      const auto when = deadlines_.top().first;
      deadlines_.pop();
      auto it = jobs_.find(msg_id);
      if (it == jobs_.end()) continue;
      Job& job = *it->second;
      if (!job.queued || !job.deadline || *job.deadline != when) continue;
      fail(job, "TaskTimeout",
           "task " + msg_id + " waited " + std::to_string(job.timeout) +
               " s in the queue without its dependencies being met or an engine free");
    }
  }

  TaskSockets s_;
  int hwm_;
  std::unique_ptr<Scheme> scheme_;
  proto::Session session_;
  Logger log_;
  EngineRoster roster_;
  bool sent_on_resubmit_ = false;  // since the last wait: the Poller must look at resubmit
  // The last valid task metadata, and its text as received.
  std::optional<proto::TaskMetadata> last_metadata_;
  std::string last_metadata_text_;

  std::unordered_map<std::string, std::unique_ptr<Engine>> engines_;
  std::unordered_map<std::string, std::int64_t> lost_ids_;
  std::vector<Engine*> order_;  // least recently used first
  std::unordered_map<std::string, std::unique_ptr<Job>> jobs_;
  std::list<Job*> queue_;                         // waiting jobs, in submission order
  std::unordered_map<std::string, IdSet> graph_;  // msg_id -> jobs waiting on it
  FinishedTasks done_;
  // Every engine that has been registered, by slot: a finished task's outcome names its
  // engine by slot (4 bytes rather than a copy of the uuid).
  std::vector<std::string> slots_;
  std::unordered_map<std::string, std::uint32_t> slot_by_uuid_;
  using Deadline = std::pair<SteadyClock::time_point, std::string>;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
  std::deque<std::string> finished_;  // finished tasks whose dependents are not yet released
  std::uint64_t next_seq_ = 0;
  std::vector<Engine*> candidates_;
  std::vector<int> loads_;
};

}  // namespace

void run_task_scheduler(TaskSockets sockets, TaskSchedulerOptions options,
                        proto::SessionOptions session_options, Logger log) {
  TaskScheduler scheduler(std::move(sockets), options, std::move(session_options), log);
  try {
    scheduler.run();
  } catch (const zmq::error_t& e) {
    if (!is_shutdown(e)) log->critical("task scheduler stopped: {}", e.what());
  }
}

}  // namespace ipcpp::controller
