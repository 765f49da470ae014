// moeserve tokenize / detokenize: the tokenizer of a GGUF file from the command
// line, with llama-tokenize's defaults (special tokens parsed, BOS added when
// the vocabulary asks for it).
#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "cli/args.h"
#include "cli/command.h"
#include "text/tokenizer.h"

namespace moeserve::cli {
namespace {

const char* kTokenizeUsage =
    "usage: moeserve tokenize -m FILE [--ids] [--no-bos] [--no-parse-special] (TEXT | -p TEXT | --file F)\n"
    "\n"
    "Tokenizes TEXT with the vocabulary of a GGUF file, as llama.cpp's llama-tokenize does.\n"
    "\n"
    "  -m, --model FILE     GGUF file (a model or a vocab-only file)\n"
    "  -p, --prompt TEXT    the text (or give it as the last argument)\n"
    "  -f, --file F         read the text from F, byte for byte\n"
    "  --ids                print only the ids, as one list: [1, 2, 3]\n"
    "  --no-bos             do not add BOS/EOS even if the vocabulary asks for them\n"
    "  --no-parse-special   treat text like <|im_start|> as text, not as a control token\n"
    "\n"
    "Without --ids, prints one line per token: its id and its text, e.g.    123 -> 'Hello'\n";

const char* kDetokenizeUsage =
    "usage: moeserve detokenize -m FILE [--no-special] IDS...\n"
    "\n"
    "Turns token ids back into text (printed followed by a newline). IDS may be\n"
    "separate arguments or one list such as \"[1, 2, 3]\".\n"
    "\n"
    "  -m, --model FILE   GGUF file (a model or a vocab-only file)\n"
    "  --no-special       do not print the text of control tokens such as <|im_end|>\n";

std::string read_file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int run_tokenize(const std::vector<std::string>& argv) {
    Args args(argv);
    std::string model, text, file;
    bool have_text = false, ids_only = false, add_bos = true, parse_special = true;
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kTokenizeUsage, stdout);
            return 0;
        } else if (args.flag({"-m", "--model"})) {
            model = args.value();
        } else if (args.flag({"-p", "--prompt"})) {
            text = args.value();
            have_text = true;
        } else if (args.flag({"-f", "--file"})) {
            file = args.value();
        } else if (args.flag({"--ids"})) {
            ids_only = true;
        } else if (args.flag({"--no-bos"})) {
            add_bos = false;
        } else if (args.flag({"--no-parse-special"})) {
            parse_special = false;
        } else if (args.peek().size() > 1 && args.peek()[0] == '-' && !have_text) {
            throw UsageError("unknown option " + args.peek() + " (see moeserve tokenize --help)");
        } else {
            if (have_text) throw UsageError("more than one text given ('" + args.peek() + "')");
            text = args.next();
            have_text = true;
        }
    }
    if (model.empty()) throw UsageError("no model given (-m FILE)");
    if (have_text == !file.empty()) throw UsageError("give the text either as an argument or with --file, once");
    if (!file.empty()) text = read_file_bytes(file);

    Tokenizer tok = Tokenizer::from_file(model);
    std::vector<TokenId> ids = tok.tokenize(text, add_bos, parse_special);
    std::string out;
    if (ids_only) {
        out += '[';
        for (size_t i = 0; i < ids.size(); ++i) out += fmt::format("{}{}", i ? ", " : "", ids[i]);
        out += "]\n";
    } else {
        for (TokenId id : ids) out += fmt::format("{:6d} -> '{}'\n", id, tok.token_to_piece(id, true));
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}

// "12", "[1,", "2]", "1, 2, 3" ... -> ids
void parse_ids(const std::string& arg, std::vector<TokenId>& ids) {
    size_t i = 0;
    while (i < arg.size()) {
        char c = arg[i];
        if (c == '[' || c == ']' || c == ',' || c == ' ' || c == '\t' || c == '\n') {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < arg.size() && arg[j] != ',' && arg[j] != ']' && arg[j] != ' ' && arg[j] != '\t' && arg[j] != '\n')
            ++j;
        int64_t v = 0;
        auto [p, ec] = std::from_chars(arg.data() + i, arg.data() + j, v);
        if (ec != std::errc() || p != arg.data() + j || v < INT32_MIN || v > INT32_MAX)
            throw UsageError("'" + arg.substr(i, j - i) + "' is not a token id");
        ids.push_back(TokenId(v));
        i = j;
    }
}

int run_detokenize(const std::vector<std::string>& argv) {
    Args args(argv);
    std::string model;
    bool render_special = true;
    std::vector<TokenId> ids;
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kDetokenizeUsage, stdout);
            return 0;
        } else if (args.flag({"-m", "--model"})) {
            model = args.value();
        } else if (args.flag({"--no-special"})) {
            render_special = false;
        } else if (args.peek().size() > 1 && args.peek()[0] == '-' &&
                   !(args.peek()[1] >= '0' && args.peek()[1] <= '9')) {
            throw UsageError("unknown option " + args.peek() + " (see moeserve detokenize --help)");
        } else {
            parse_ids(args.next(), ids);
        }
    }
    if (model.empty()) throw UsageError("no model given (-m FILE)");
    Tokenizer tok = Tokenizer::from_file(model);
    std::string text = tok.detokenize(ids, render_special);
    text += '\n';
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}

}  // namespace

MOESERVE_COMMAND("tokenize", "turn text into token ids with a GGUF file's vocabulary", run_tokenize);
MOESERVE_COMMAND("detokenize", "turn token ids back into text", run_detokenize);

}  // namespace moeserve::cli
