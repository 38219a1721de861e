// The renderer's ray throughput against Embree's bare intersection
// throughput on the same mesh, measured in one run.
//
//   bench_render ICT_DIR [SIZE] [SPP] [REPEATS]
//
// Scene: the ICT FaceKit's neutral head (all 52k triangles), frontal at 60 cm,
// a key sphere light, ambient occlusion and an ambient term (hfr-render's VIS
// lighting). Reports, single-threaded:
//  - the renderer: Mrays/s (primary + shadow + AO rays) for SIZE x SIZE at SPP;
//  - Embree alone: rtcIntersect1 on the same camera rays (no shading), and
//    rtcOccluded1 on random rays from the head's surface towards the light;
//  - Embree alone on the renderer's mix of rays (single rays; camera rays in
//    packets of 8, as the renderer traces them) and the renderer's share.
#include <embree3/rtcore.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "hfr/mesh.hpp"
#include "hfr/morphable.hpp"
#include "hfr/render.hpp"

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_render ICT_DIR [SIZE] [SPP] [REPEATS]\n");
    return 2;
  }
  const int size = argc > 2 ? std::atoi(argv[2]) : 256, spp = argc > 3 ? std::atoi(argv[3]) : 8,
            repeats = argc > 4 ? std::atoi(argv[4]) : 3;
  const auto m = hfr::morph::load_ict_facekit(argv[1]);
  const auto pose = hfr::mesh::pose_from_angles(0, 0, 0, {0, -2, 60});
  hfr::mesh::TriMesh head = m.neutral;
  head.positions = hfr::mesh::transform(pose, m.neutral.positions);
  const double f = 0.5 * size / std::tan(0.5 * 30 * M_PI / 180);

  // the renderer
  hfr::render::Device device(1);
  hfr::render::Scene scene(device, hfr::render::BuildQuality::medium);
  hfr::render::Material skin;
  skin.albedo_value = {0.6f, 0.42f, 0.35f};
  skin.specular_value = 0.028f;
  skin.roughness_value = 0.4f;
  scene.add(head, skin);
  scene.commit();
  const std::vector<hfr::render::Light> lights = {hfr::render::SphereLight{{-40, -40, -20}, 15, {3e4f, 3e4f, 3e4f}},
                                                  hfr::render::AmbientLight{{0.2f, 0.2f, 0.2f}}};
  hfr::render::RenderOptions o;
  o.width = o.height = size;
  o.camera = {f, f, 0.5 * size, 0.5 * size};
  o.spp = spp;
  o.ambient_occlusion = true;
  o.ao_distance = 20;
  double best = 1e30;
  hfr::render::RenderStats st;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = now();
    hfr::render::render(scene, lights, o, &st);
    best = std::min(best, now() - t0);
  }
  const double rays = double(st.primary_rays + st.shadow_rays);
  const double renderer = rays / best / 1e6;

  // Embree alone, same mesh and build settings
  RTCDevice dev = rtcNewDevice("threads=1");
  RTCScene sc = rtcNewScene(dev);
  rtcSetSceneBuildQuality(sc, RTC_BUILD_QUALITY_MEDIUM);
  RTCGeometry g = rtcNewGeometry(dev, RTC_GEOMETRY_TYPE_TRIANGLE);
  auto* vb = static_cast<float*>(rtcSetNewGeometryBuffer(g, RTC_BUFFER_TYPE_VERTEX, 0, RTC_FORMAT_FLOAT3, 12,
                                                         static_cast<std::size_t>(head.num_vertices())));
  auto* ib = static_cast<unsigned*>(rtcSetNewGeometryBuffer(g, RTC_BUFFER_TYPE_INDEX, 0, RTC_FORMAT_UINT3, 12,
                                                            static_cast<std::size_t>(head.num_triangles())));
  std::copy(head.positions.begin(), head.positions.end(), vb);
  for (std::size_t i = 0; i < head.triangles.size(); ++i) ib[i] = static_cast<unsigned>(head.triangles[i]);
  rtcCommitGeometry(g);
  rtcAttachGeometry(sc, g);
  rtcReleaseGeometry(g);
  rtcCommitScene(sc);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(0, 1);
  // camera rays, the renderer's order (row by row, spp jittered samples per pixel)
  double best_i = 1e30, best_o = 1e30;
  std::size_t hits = 0, n_i = 0, n_o = 0;
  std::vector<std::array<float, 6>> shadow;  // origin, direction towards the light, from hit points
  for (int r = 0; r < repeats; ++r) {
    hits = n_i = 0;
    const double t0 = now();
    RTCIntersectContext ctx;
    rtcInitIntersectContext(&ctx);
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        for (int k = 0; k < spp; ++k) {
          RTCRayHit rh;
          float d[3] = {static_cast<float>((x + u(rng) - 0.5 * size) / f), static_cast<float>((y + u(rng) - 0.5 * size) / f), 1};
          const float l = std::sqrt(d[0] * d[0] + d[1] * d[1] + 1);
          rh.ray.org_x = rh.ray.org_y = rh.ray.org_z = 0;
          rh.ray.dir_x = d[0] / l, rh.ray.dir_y = d[1] / l, rh.ray.dir_z = d[2] / l;
          rh.ray.tnear = 0, rh.ray.tfar = INFINITY, rh.ray.time = 0, rh.ray.mask = ~0u, rh.ray.id = 0, rh.ray.flags = 0;
          rh.hit.geomID = RTC_INVALID_GEOMETRY_ID;
          rh.hit.instID[0] = RTC_INVALID_GEOMETRY_ID;
          rtcIntersect1(sc, &ctx, &rh);
          ++n_i;
          if (rh.hit.geomID != RTC_INVALID_GEOMETRY_ID) {
            ++hits;
            if (r == 0) {
              const float t = rh.ray.tfar * 0.9999f;
              const float p[3] = {rh.ray.dir_x * t, rh.ray.dir_y * t, rh.ray.dir_z * t};
              float w[3] = {-40 - p[0] + 15 * (u(rng) - 0.5f), -40 - p[1] + 15 * (u(rng) - 0.5f), -20 - p[2]};
              const float wl = std::sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2]);
              shadow.push_back({p[0], p[1], p[2], w[0] / wl, w[1] / wl, w[2] / wl});
            }
          }
        }
    best_i = std::min(best_i, now() - t0);
  }
  // packets of 8: the spp samples of one pixel (or 8 neighbouring pixels at low spp)
  double best_p = 1e30;
  std::size_t n_p = 0;
  for (int r = 0; r < repeats; ++r) {
    n_p = 0;
    const double t0 = now();
    RTCIntersectContext ctx;
    rtcInitIntersectContext(&ctx);
    ctx.flags = RTC_INTERSECT_CONTEXT_FLAG_COHERENT;
    alignas(32) RTCRayHit8 rh;
    alignas(32) int valid[8];
    int lane = 0;
    auto flush = [&](int n) {
      for (int i = 0; i < 8; ++i) valid[i] = i < n ? -1 : 0;
      rtcIntersect8(valid, sc, &ctx, &rh);
      n_p += static_cast<std::size_t>(n);
    };
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        for (int k = 0; k < spp; ++k) {
          float d[3] = {static_cast<float>((x + u(rng) - 0.5 * size) / f), static_cast<float>((y + u(rng) - 0.5 * size) / f), 1};
          const float l = std::sqrt(d[0] * d[0] + d[1] * d[1] + 1);
          rh.ray.org_x[lane] = rh.ray.org_y[lane] = rh.ray.org_z[lane] = 0;
          rh.ray.dir_x[lane] = d[0] / l, rh.ray.dir_y[lane] = d[1] / l, rh.ray.dir_z[lane] = d[2] / l;
          rh.ray.tnear[lane] = 0, rh.ray.tfar[lane] = INFINITY, rh.ray.time[lane] = 0, rh.ray.mask[lane] = ~0u;
          rh.ray.id[lane] = 0, rh.ray.flags[lane] = 0;
          rh.hit.geomID[lane] = RTC_INVALID_GEOMETRY_ID;
          rh.hit.instID[0][lane] = RTC_INVALID_GEOMETRY_ID;
          if (++lane == 8) flush(8), lane = 0;
        }
    if (lane) flush(lane), lane = 0;
    best_p = std::min(best_p, now() - t0);
  }
  for (int r = 0; r < repeats; ++r) {
    n_o = 0;
    const double t0 = now();
    RTCIntersectContext ctx;
    rtcInitIntersectContext(&ctx);
    for (const auto& s : shadow) {
      RTCRay ray;
      ray.org_x = s[0], ray.org_y = s[1], ray.org_z = s[2];
      ray.dir_x = s[3], ray.dir_y = s[4], ray.dir_z = s[5];
      ray.tnear = 1e-3f, ray.tfar = 80, ray.time = 0, ray.mask = ~0u, ray.id = 0, ray.flags = 0;
      rtcOccluded1(sc, &ctx, &ray);
      ++n_o;
    }
    best_o = std::min(best_o, now() - t0);
  }
  rtcReleaseScene(sc);
  rtcReleaseDevice(dev);
  const double bare_i = n_i / best_i / 1e6, bare_o = n_o / std::max(best_o, 1e-9) / 1e6;
  // the bare cost of the renderer's ray mix: primary rays at the intersect rate, the rest at the occluded rate
  const double bare_mix = rays / (st.primary_rays / (bare_i * 1e6) + st.shadow_rays / (bare_o * 1e6)) / 1e6;
  std::printf("mesh: %lld triangles; image %dx%d, %d spp, 1 thread; %.0f%% of the pixels on the head\n",
              static_cast<long long>(head.num_triangles()), size, size, spp, 100.0 * hits / std::max<std::size_t>(n_i, 1));
  std::printf("renderer: %.3f s, %.0f primary + %.0f shadow/AO rays = %.2f Mrays/s\n", best, double(st.primary_rays),
              double(st.shadow_rays), renderer);
  std::printf("Embree rtcIntersect1, same camera rays: %.2f Mrays/s\n", bare_i);
  std::printf("Embree rtcIntersect8 packets, same camera rays: %.2f Mrays/s\n", n_p / best_p / 1e6);  // NOLINT
  std::printf("Embree rtcOccluded1, hit points -> light: %.2f Mrays/s\n", bare_o);
  const double bare_p = n_p / best_p / 1e6;
  const double bare_mix_p = rays / (st.primary_rays / (bare_p * 1e6) + st.shadow_rays / (bare_o * 1e6)) / 1e6;
  std::printf("Embree alone on the renderer's ray mix: %.2f Mrays/s with single rays (renderer at %.0f%%), %.2f Mrays/s "
              "with camera rays in packets of 8 as the renderer traces them (renderer at %.0f%%)\n",
              bare_mix, 100 * renderer / bare_mix, bare_mix_p, 100 * renderer / bare_mix_p);
  return 0;
}
