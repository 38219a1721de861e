// hfr-match: score probe embeddings against a gallery: top-k search, verification pairs, score matrices.
#include "hfr/cli.hpp"
#include "hfr/error.hpp"
#include "hfr/match.hpp"
#include "hfr/version.hpp"

namespace {
using hfr::cli::Complete;

hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-match";
  s.summary = "score probe embeddings against a gallery: top-k search, verification pairs, score matrices";
  s.synopsis = {"[OPTION]... GALLERY PROBES", "--protocol=NAME --fold=K [OPTION]... DATABASE", "--pairs=FILE [OPTION]... GALLERY PROBES", "--matrix [OPTION]... GALLERY PROBES",
                "--index=TYPE --save-index=FILE [OPTION]... GALLERY [PROBES]"};
  s.description = {
      "Scores every probe against the gallery by cosine similarity of L2-normalised embeddings (the default) or by the negative "
      "Euclidean distance of the raw embeddings (--metric euclidean), so a higher score always means more similar.",
      "GALLERY and PROBES are embedding sets: a tensor file holding an N x D tensor 'embeddings' (f32, f16 or bf16; row labels from "
      "its metadata arrays 'ids' and 'subjects' when present, else the row number), or JSON-lines records naming a tensor file and "
      "row each ({\"id\":..,\"subject\":..,\"embeddings\":\"set.hft\",\"row\":N}; relative paths are relative to the records file; "
      "records with an \"error\" field are skipped). Either one may be - (stdin); the kind is recognised from the data.",
      "By default each probe gets one record with its --top best gallery entries (ids, scores, ranks; and, when both sides carry "
      "subjects, whether each is mated, plus the best mate's score and exact rank over the whole gallery, which is what CMC curves "
      "need: rank = 1 + the number of non-mated gallery entries scoring at least as high as the mate). --pairs scores the listed "
      "pairs (verification); --matrix writes every probe x gallery score as a tensor file 'scores' [P, G] with ids and subjects in "
      "its metadata, for hfr-eval.",
      "Exact search runs as blocked sgemm (OpenBLAS) over tiles that stay in cache, with the probes streamed in blocks of --batch, "
      "so memory is bounded by the gallery plus one block. For galleries of millions, --index builds a FAISS index (flat: exact; "
      "ivf: inverted lists, --nlist/--nprobe; hnsw: graph, --hnsw-m/--ef-search); --save-index keeps it in a file that can be "
      "given as GALLERY later. With an approximate index the mate rank is its position among the hits, or null beyond --top.",
      "--gallery-templates and --probe-templates merge all rows of a subject into one template: the mean of the normalised "
      "embeddings, normalised again; its id is the subject.",
  };
  s.reads = "two embedding sets (tensor files or records; - is stdin for one), a saved index, and with --pairs a list of pairs: "
            "lines 'PROBE_ID GALLERY_ID' (whitespace or comma separated, # comments) or records {\"probe\":..,\"gallery\":..}.";
  s.writes = "JSON-lines records to -o FILE or stdout: per probe {probe, probe_subject, gallery[], score[], rank[], mated[], mate, "
             "mate_score, mate_rank}; per pair {probe, gallery, score, mated, probe_subject, gallery_subject}; or with --matrix a "
             "tensor file. Files are written atomically.";
  s.positionals = {{"GALLERY", "Gallery embedding set or saved index.", Complete::file, {}, true, false},
                   {"PROBES", "Probe embedding set.", Complete::file, {}, false, false}};
  s.options = {
      {"output", 'o', "FILE", "Write here instead of stdout.", "-", {}, Complete::file},
      {"top", 'n', "N", "Gallery entries reported per probe.", "10", {}, Complete::none},
      {"pairs", 0, "FILE", "Score the pairs listed in FILE (verification) instead of searching.", "", {}, Complete::file},
      {"matrix", 0, "", "Write the full probe x gallery score matrix as a tensor file.", "", {}, Complete::none},
      {"metric", 0, "NAME", "Similarity: cosine of normalised embeddings, or negative Euclidean distance.", "cosine",
       {"cosine", "euclidean"}, Complete::choices},
      {"gallery-templates", 0, "", "Merge gallery rows of one subject into a template.", "", {}, Complete::none},
      {"probe-templates", 0, "", "Merge probe rows of one subject into a template.", "", {}, Complete::none},
      {"subject-field", 0, "NAME", "Record field holding the subject (identity label).", "subject", {}, Complete::none},
      {"id-field", 0, "NAME", "Record field holding the item id.", "id", {}, Complete::none},
      {"tensor", 0, "NAME", "Tensor holding the embeddings in tensor files.", "embeddings", {}, Complete::none},
      {"batch", 'b', "N", "Probes scored per block (memory: N x gallery size x 4 bytes at most for --matrix).", "4096", {}, Complete::none},
      {"index", 0, "TYPE", "Search method: exact blocked sgemm, or a FAISS index.", "exact", {"exact", "flat", "ivf", "hnsw"},
       Complete::choices},
      {"nlist", 0, "N", "ivf: number of inverted lists (0: about 4 x sqrt(gallery size)).", "0", {}, Complete::none},
      {"nprobe", 0, "N", "ivf: lists visited per query.", "16", {}, Complete::none},
      {"hnsw-m", 0, "N", "hnsw: links per node.", "32", {}, Complete::none},
      {"ef-search", 0, "N", "hnsw: candidates kept per query (higher: better recall, slower).", "64", {}, Complete::none},
      {"save-index", 0, "FILE", "Save the built index (with gallery ids and subjects) to FILE.", "", {}, Complete::file},
      {"protocol", 0, "NAME", "Run a benchmark protocol fold: GALLERY is one embedding set of the whole database, the fold's lists "
       "select gallery and probes by path and give their subjects. A list entry without an embedding is an error; with "
       "--keep-going it is left out with a warning and the exit status is 3.", "",
       {"casia-nir-vis-2.0", "lamp-hq", "oulu-casia-nir-vis", "buaa-visnir"}, Complete::choices},
      {"protocol-dir", 0, "DIR", "Directory holding the protocol's list files.", ".", {}, Complete::dir},
      {"fold", 0, "K", "Protocol fold (CASIA NIR-VIS 2.0 and LAMP-HQ: 1..10).", "1", {}, Complete::none},
      {"path-field", 0, "NAME", "Record field holding the source image path (matched against protocol lists).", "path", {},
       Complete::none},
      {"ignore-extension", 0, "", "Match list paths to images whatever their file extension (CASIA lists name .jpg, the "
       "database stores .bmp).", "", {}, Complete::none},
      {"force", 'f', "", "Write binary data even to a terminal.", "", {}, Complete::none},
  };
  s.keep_going = true;
  s.examples = {
      {"hfr-match gallery.hft probes.hft > top10.jsonl", "Top-10 gallery entries for every probe."},
      {"hfr-match --matrix vis.jsonl nir.jsonl -o scores.hft && hfr-eval scores.hft", "All NIR x VIS scores, then the full report."},
      {"hfr-match --pairs pairs.txt gallery.hft probes.hft | hfr-eval -", "Verification pairs scored and evaluated."},
      {"hfr-match --gallery-templates --top 5 enrol.jsonl probes.jsonl", "Search against one template per enrolled subject."},
      {"hfr-match --index hnsw --save-index big.idx.hft big.hft", "Build and save an HNSW index of a large gallery."},
      {"hfr-match big.idx.hft probes.hft --ef-search 128", "Search a saved index."},
      {"for k in $(seq 10); do hfr-match --matrix --protocol casia-nir-vis-2.0 --protocol-dir lists --fold $k --ignore-extension "
       "all.jsonl -o fold$k.hft; done; hfr-eval fold*.hft", "CASIA NIR-VIS 2.0 View 2: ten folds, mean ± std."},
  };
  s.see_also = {"hfr-embed(1)", "hfr-eval(1)", "hfr-formats(5)"};
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args& a) {
    hfr::match::Options o;
    const auto& pos = a.positionals();
    o.gallery = pos.at(0);
    if (pos.size() > 1) o.probes = pos[1];
    if (pos.size() > 2) throw hfr::UsageError("too many arguments: expected GALLERY PROBES");
    if (a.given("protocol") && pos.size() != 1) throw hfr::UsageError("--protocol takes one embedding set (DATABASE), not GALLERY PROBES");
    o.output = a.str("output");
    o.top = static_cast<std::size_t>(a.integer("top", 1, 1000000));
    if (a.given("pairs") && a.flag("matrix")) throw hfr::UsageError("--pairs and --matrix exclude each other");
    if (a.given("pairs")) {
      o.mode = hfr::match::Mode::pairs;
      o.pairs_file = a.str("pairs");
    } else if (a.flag("matrix")) {
      o.mode = hfr::match::Mode::matrix;
    }
    o.metric = hfr::search::parse_metric(a.str("metric"));
    o.gallery_templates = a.flag("gallery-templates");
    o.probe_templates = a.flag("probe-templates");
    o.read.subject_field = a.str("subject-field");
    o.read.id_field = a.str("id-field");
    o.read.tensor = a.str("tensor");
    o.batch = static_cast<std::size_t>(a.integer("batch", 1, 1 << 24));
    o.index_type = a.str("index");
    o.index.nlist = static_cast<int>(a.integer("nlist", 0, 1 << 24));
    o.index.nprobe = static_cast<int>(a.integer("nprobe", 1, 1 << 24));
    o.index.hnsw_m = static_cast<int>(a.integer("hnsw-m", 4, 512));
    o.index.ef_search = static_cast<int>(a.integer("ef-search", 1, 1 << 20));
    if (!a.given("nprobe")) o.index.nprobe = 0;  // a saved index keeps its own unless asked
    if (!a.given("ef-search")) o.index.ef_search = 0;
    o.save_index = a.str("save-index");
    o.protocol = a.str("protocol");
    o.protocol_dir = a.str("protocol-dir");
    o.fold = static_cast<int>(a.integer("fold", 1, 1000));
    o.read.path_field = a.str("path-field");
    o.ignore_extension = a.flag("ignore-extension");
    o.threads = a.common().threads;
    o.keep_going = a.common().keep_going;
    o.force = a.flag("force");
    nlohmann::json prov = {{"tool", "hfr-match"}, {"version", hfr::kVersion}, {"arguments", a.argv()}};
    o.provenance = prov.dump();
    return hfr::match::run(o);
  });
}
