// The flags every model-running command shares (-m, -t, -c, -ctk, -ctv,
// -ub), parsed in one place so they mean the same everywhere.
#pragma once

#include "cli/args.h"
#include "engine/engine.h"

namespace moeserve::cli {

// Consumes one engine flag and its value into opt; false if the next
// argument is not an engine flag.
bool parse_engine_flag(Args& args, EngineOptions& opt);

// Consumes one of the expert placement flags (-cmoe, -ncmoe N, -ot
// REGEX=BUFTYPE,...); false if the next argument is not one. Part of
// parse_engine_flag; bench parses them on their own.
bool parse_expert_placement_flag(Args& args, ExpertPlacementFlags& flags);

// Help lines for those flags, to append to a command's usage text.
extern const char* const kEngineFlagsHelp;

}  // namespace moeserve::cli
