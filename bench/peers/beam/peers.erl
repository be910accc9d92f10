%% The BEAM side of the peer comparison: the same workloads as the Rust binaries,
%% one per `erl` run, printing one JSON line.
%%
%%   erlc -o beam beam/peers.erl
%%   erl -noshell +S 2:2 +P 2097152 -pa beam -run peers main WORKLOAD [N]
%%
%% Messages are small integers (the Rust side's u64). Processes are plain spawned
%% processes; request-reply is gen_server:call; sends are `!` (unbounded mailboxes).
-module(peers).
-behaviour(gen_server).
-export([main/1]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(FLOOD_CAP_BYTES, (3 bsl 30)).

main([W]) -> main([W, integer_to_list(default_n(W))]);
main([W, NStr]) ->
    N = list_to_integer(NStr),
    run(W, N),
    halt(0).

default_n("tell_1to1") -> 10000000;
default_n("tell_2to1") -> 10000000;
default_n("request_reply") -> 1000000;
default_n("ping_pong") -> 500000;
default_n("spawn") -> 1000000;
default_n("idle_rss") -> 100000;
default_n("flood") -> 5.

%% ----- workloads -----

run("tell_1to1", N) -> tell("tell_1to1", N, 1);
run("tell_2to1", N) -> tell("tell_2to1", N, 2);
run("request_reply", N) ->
    {ok, S} = gen_server:start(?MODULE, [], []),
    T0 = now_us(),
    call_loop(S, 0, N),
    rate("request_reply", N, now_us() - T0, "M calls/s");
run("ping_pong", N) ->
    Self = self(),
    B = spawn(fun() -> bouncer(undefined, undefined) end),
    A = spawn(fun() -> bouncer(undefined, undefined) end),
    A ! {setup, B, Self},
    B ! {setup, A, undefined},
    timer:sleep(10),
    T0 = now_us(),
    A ! {ball, 2 * N},
    receive done -> ok end,
    Us = now_us() - T0,
    emit("ping_pong", Us * 1000 / N, "ns/round trip", N, []);
run("spawn", N) ->
    {Us, _Pids} = spawn_idle(N),
    rate("spawn", N, Us, "M actors/s");
run("idle_rss", N) ->
    erlang:garbage_collect(),
    Before = rss(),
    {_Us, Pids} = spawn_idle(N),
    timer:sleep(200),
    After = rss(),
    emit("idle_rss", (After - Before) / N, "B/actor", N, [{rss_mib, After / 1048576}]),
    length(Pids);
run("flood", Secs) ->
    Slow = spawn(fun slow/0),
    Base = rss(),
    T0 = now_us(),
    {Sent, Peak, Capped} = flood(Slow, 0, T0 + Secs * 1000000, Base, Base),
    Growth = Peak - Base,
    emit("flood", Growth / 1048576, "MiB RSS growth", Sent,
         [{accepted, Sent}, {refused, 0}, {secs, (now_us() - T0) / 1.0e6},
          {capped, case Capped of true -> 1; false -> 0 end}]).

%% tell: K producers share N messages to one counting process.
tell(Name, N, K) ->
    Self = self(),
    C = spawn(fun() -> counter(N, Self) end),
    T0 = now_us(),
    [spawn(fun() -> produce(C, 0, Share) end) || Share <- shares(N, K)],
    receive done -> ok end,
    rate(Name, N, now_us() - T0, "M msg/s").

counter(0, Parent) -> Parent ! done;
counter(Left, Parent) ->
    receive _ -> counter(Left - 1, Parent) end.

produce(_, I, I) -> ok;
produce(C, I, N) -> C ! I, produce(C, I + 1, N).

shares(N, K) -> [N div K + (case I < N rem K of true -> 1; false -> 0 end) || I <- lists:seq(0, K - 1)].

%% request-reply
init([]) -> {ok, nostate}.
handle_call(N, _From, S) -> {reply, N + 1, S}.
handle_cast(_, S) -> {noreply, S}.

call_loop(_, N, N) -> ok;
call_loop(S, I, N) ->
    R = gen_server:call(S, I, 30000),
    R = I + 1,
    call_loop(S, I + 1, N).

%% ping-pong: the ball ends (count 0) at the first bouncer.
bouncer(Peer, Done) ->
    receive
        {setup, P, D} -> bouncer(P, D);
        {ball, 0} -> Done ! done, bouncer(Peer, Done);
        {ball, N} -> Peer ! {ball, N - 1}, bouncer(Peer, Done)
    end.

%% spawn: N idle processes, each counting itself in (an atomic, as the Rust side's
%% start hooks do) when it first runs; done when all have.
spawn_idle(N) ->
    Ref = atomics:new(1, []),
    atomics:put(Ref, 1, N),
    T0 = now_us(),
    Pids = spawn_loop(Ref, N, []),
    wait_zero(Ref),
    {now_us() - T0, Pids}.

spawn_loop(_, 0, Acc) -> Acc;
spawn_loop(Ref, N, Acc) ->
    P = spawn(fun() -> atomics:sub(Ref, 1, 1), idle() end),
    spawn_loop(Ref, N - 1, [P | Acc]).

idle() -> receive stop -> ok end.

wait_zero(Ref) ->
    case atomics:get(Ref, 1) of
        0 -> ok;
        _ -> erlang:yield(), wait_zero(Ref)
    end.

%% flood: `!` as fast as possible to a process that sleeps 1 ms per message.
slow() ->
    receive _ -> timer:sleep(1), slow() end.

flood(Slow, I, Until, Base, Peak) ->
    Slow ! I,
    case (I + 1) rem 4096 of
        0 ->
            Peak1 = max(Peak, rss()),
            Now = now_us(),
            if
                Peak1 - Base >= ?FLOOD_CAP_BYTES -> {I + 1, Peak1, true};
                Now >= Until -> {I + 1, max(Peak1, rss()), false};
                true -> flood(Slow, I + 1, Until, Base, Peak1)
            end;
        _ -> flood(Slow, I + 1, Until, Base, Peak)
    end.

%% ----- helpers -----

now_us() -> erlang:monotonic_time(microsecond).

%% Resident set size in bytes, from /proc/self/statm.
rss() ->
    {ok, Bin} = file:read_file("/proc/self/statm"),
    [_, Res | _] = string:lexemes(binary_to_list(Bin), " \n"),
    list_to_integer(Res) * 4096.

rate(Name, N, Us, Unit) ->
    emit(Name, N / Us, Unit, N, [{secs, Us / 1.0e6}]).

emit(Workload, Value, Unit, N, Extra) ->
    Ex = lists:flatten([io_lib:format(",\"~s\":~s", [K, num(V)]) || {K, V} <- Extra]),
    io:format("{\"system\":\"beam\",\"workload\":\"~s\",\"value\":~s,\"unit\":\"~s\",\"n\":~b~s}~n",
              [Workload, num(Value), Unit, N, Ex]).

num(V) when is_integer(V) -> integer_to_list(V);
num(V) -> io_lib:format("~.4f", [V]).
