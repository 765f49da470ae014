// Resumable-stream sessions and the completion-control registry, without a
// server: byte offsets, the kept window, replacement, lookup and expiry;
// which completions /v1/chat/completions/control can reach.
#include <gtest/gtest.h>

#include <thread>

#include "server/completion_controls.h"
#include "server/stream_sessions.h"

namespace moeserve {
namespace {

using namespace std::chrono_literals;

std::string read_all(const StreamSession& s, size_t& offset) {
    std::string out;
    while (s.read(offset, out, 0ms) == StreamSession::Read::bytes) {
    }
    return out;
}

TEST(StreamSession, replays_from_any_offset_and_follows_until_finished) {
    StreamSession s("c1", 1024);
    s.append("data: a\n\n");
    s.append("");
    s.append("data: b\n\n");
    size_t from0 = 0, from9 = 9;
    EXPECT_EQ(read_all(s, from0), "data: a\n\ndata: b\n\n");
    EXPECT_EQ(from0, 18u);
    EXPECT_EQ(read_all(s, from9), "data: b\n\n");
    std::string out;
    EXPECT_EQ(s.read(from0, out, 0ms), StreamSession::Read::waiting);
    // A reader waiting for more is woken by the next append.
    std::thread producer([&] {
        std::this_thread::sleep_for(20ms);
        s.append("data: [DONE]\n\n");
        s.finish();
    });
    EXPECT_EQ(s.read(from0, out, 5s), StreamSession::Read::bytes);
    EXPECT_EQ(out, "data: [DONE]\n\n");
    producer.join();
    EXPECT_EQ(s.read(from0, out, 0ms), StreamSession::Read::finished);
    s.append("late");  // ignored once finished
    const StreamSession::Info i = s.info();
    EXPECT_TRUE(i.done);
    EXPECT_EQ(i.total_bytes, 32u);
    EXPECT_EQ(i.dropped_bytes, 0u);
    EXPECT_GT(i.completed_at, 0);
    EXPECT_GE(i.completed_at, i.started_at);
}

TEST(StreamSession, keeps_only_its_newest_bytes) {
    StreamSession s("c1", 8);
    s.append("0123456");
    s.append("789A");  // 11 bytes: the first 3 are dropped
    EXPECT_EQ(s.info().dropped_bytes, 3u);
    EXPECT_EQ(s.info().total_bytes, 11u);
    size_t old = 2, kept = 3;
    std::string out;
    EXPECT_EQ(s.read(old, out, 0ms), StreamSession::Read::lost);
    EXPECT_EQ(read_all(s, kept), "3456789A");
    s.append("0123456789ABCDEF");  // longer than the window: its tail only
    size_t tail = 19;
    EXPECT_EQ(s.info().dropped_bytes, 19u);
    EXPECT_EQ(read_all(s, tail), "89ABCDEF");
}

TEST(StreamSessions, one_session_per_conversation_and_the_newer_wins) {
    StreamSessions sessions;
    auto first = sessions.open("conv");
    auto second = sessions.open("conv");
    EXPECT_TRUE(first->cancelled()) << "the replaced answer stops";
    EXPECT_TRUE(first->info().done);
    EXPECT_FALSE(second->cancelled());
    EXPECT_EQ(sessions.find("conv"), second);
    // Discarding the replaced one leaves the newer in place.
    sessions.discard(first);
    EXPECT_EQ(sessions.find("conv"), second);
    sessions.discard(second);
    EXPECT_EQ(sessions.find("conv"), nullptr);
    EXPECT_TRUE(second->info().done);
}

TEST(StreamSessions, cancel_stops_the_producer_and_forgets_the_session) {
    StreamSessions sessions;
    auto s = sessions.open("conv");
    EXPECT_TRUE(sessions.cancel("conv"));
    EXPECT_TRUE(s->cancelled());
    EXPECT_TRUE(s->info().done);
    EXPECT_EQ(sessions.find("conv"), nullptr);
    EXPECT_FALSE(sessions.cancel("conv"));
}

TEST(StreamSessions, lookup_answers_only_for_the_ids_asked_and_their_model_variants) {
    StreamSessions sessions;
    sessions.open("a");
    sessions.open("a::qwen/qwen3");
    sessions.open("ab");
    sessions.open("b")->append("xyz");
    EXPECT_TRUE(sessions.lookup({}).empty());
    auto a = sessions.lookup({"a"});
    ASSERT_EQ(a.size(), 2u);
    std::vector<std::string> ids = {a[0].conversation_id, a[1].conversation_id};
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids, (std::vector<std::string>{"a", "a::qwen/qwen3"}));
    auto b = sessions.lookup({"b", "nope", ""});
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(b[0].total_bytes, 3u);
    EXPECT_FALSE(b[0].done);
}

TEST(StreamSessions, finished_sessions_expire_and_running_ones_stay) {
    StreamSessions::Limits limits;
    limits.ttl = 0s;  // expire as soon as finished
    StreamSessions sessions(limits);
    auto running = sessions.open("running");
    sessions.open("finished")->finish();
    EXPECT_EQ(sessions.find("finished"), nullptr);
    EXPECT_EQ(sessions.find("running"), running);

    StreamSessions::Limits capped;
    capped.max_sessions = 2;
    StreamSessions few(capped);
    auto r1 = few.open("r1"), r2 = few.open("r2");
    few.open("f1")->finish();
    few.open("r3");  // over the cap: the finished one goes, running ones never do
    EXPECT_EQ(few.find("f1"), nullptr);
    EXPECT_NE(few.find("r1"), nullptr);
    EXPECT_NE(few.find("r2"), nullptr);
    EXPECT_NE(few.find("r3"), nullptr);
}

TEST(StreamSessions, finished_sessions_together_keep_at_most_the_byte_cap) {
    StreamSessions::Limits limits;
    limits.max_total_bytes = 10;
    StreamSessions sessions(limits);
    auto a = sessions.open("a");
    a->append("123456");
    a->finish();
    auto running = sessions.open("running");
    running->append(std::string(50, 'x'));  // running sessions do not count and never go
    auto b = sessions.open("b");
    b->append("123456");
    b->finish();
    // 12 finished bytes > 10: the one that finished first goes at the next look.
    EXPECT_EQ(sessions.find("a"), nullptr);
    EXPECT_EQ(sessions.find("b"), b);
    EXPECT_EQ(sessions.find("running"), running);
}

TEST(CompletionControls, reaches_only_running_completions_that_asked_for_control) {
    CompletionControls controls;
    auto stream = std::make_shared<GenerationStream>();
    auto other = std::make_shared<GenerationStream>();
    {
        auto with = controls.add("chatcmpl-1", stream, /*reasoning_control=*/true);
        auto without = controls.add("chatcmpl-2", other, /*reasoning_control=*/false);
        EXPECT_FALSE(stream->reasoning_end_requested());
        auto ok = controls.reasoning_end("chatcmpl-1");
        EXPECT_TRUE(ok.success);
        EXPECT_TRUE(ok.message.empty());
        EXPECT_TRUE(stream->reasoning_end_requested());
        auto refused = controls.reasoning_end("chatcmpl-2");
        EXPECT_FALSE(refused.success);
        EXPECT_EQ(refused.message, "reasoning control not enabled for this completion");
        EXPECT_FALSE(other->reasoning_end_requested());
    }
    // The requests ended: their ids are gone.
    auto gone = controls.reasoning_end("chatcmpl-1");
    EXPECT_FALSE(gone.success);
    EXPECT_EQ(gone.message, "no active completion for this id");
    EXPECT_EQ(controls.reasoning_end("chatcmpl-unknown").message, "no active completion for this id");
}

}  // namespace
}  // namespace moeserve
