<?php
/**
 * Plugin Name: embedgate
 * Description: The session check embedgate asks (is this visitor signed in, and to which videos?), and gated posts kept off every URL the gateway does not gate.
 * Version: 0.1.0
 * License: Apache-2.0
 *
 * Install: copy this file to wp-content/plugins/ and activate it. Settings are
 * constants; define any of them in wp-config.php to change them.
 *
 * The gateway's config to go with it:
 *
 *     [session]
 *     cookie = "wordpress_logged_in_*"
 *
 *     [session.allowlist.forward_auth]
 *     url = "http://127.0.0.1:8081/embedgate/session-check"   # WordPress itself, not the gateway
 *     headers = { "X-Embedgate-Check" = "<EMBEDGATE_CHECK_SECRET>" }
 *     shares_header = "X-Embed-Shares"                        # only with per-video access
 *
 *     [[route]]
 *     prefix = "/videos/"                                      # EMBEDGATE_GATED_PREFIX
 *     access = "session"
 */

defined('ABSPATH') || exit;

/** Path of the session check. */
defined('EMBEDGATE_CHECK_PATH') || define('EMBEDGATE_CHECK_PATH', '/embedgate/session-check');
/** Shared secret the gateway sends as X-Embedgate-Check; empty: none asked. */
defined('EMBEDGATE_CHECK_SECRET') || define('EMBEDGATE_CHECK_SECRET', '');
/** Capability a signed-in user needs to see gated posts. */
defined('EMBEDGATE_CAPABILITY') || define('EMBEDGATE_CAPABILITY', 'read');
/** Slug of the category whose posts are gated. */
defined('EMBEDGATE_GATED_CATEGORY') || define('EMBEDGATE_GATED_CATEGORY', 'videos');
/** URL path prefix the gateway gates, where gated posts' permalinks must live. */
defined('EMBEDGATE_GATED_PREFIX') || define('EMBEDGATE_GATED_PREFIX', '/videos/');

/**
 * The session check: 200 for a signed-in user with the capability, 403
 * otherwise. With a user meta "embedgate_shares" (comma-separated video ids,
 * or "*"), the answer names the videos in X-Embed-Shares.
 */
add_action('init', function () {
    $path = wp_parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
    if ($path !== EMBEDGATE_CHECK_PATH) {
        return;
    }
    nocache_headers();
    header('Content-Type: text/plain; charset=utf-8');
    $sent = $_SERVER['HTTP_X_EMBEDGATE_CHECK'] ?? '';
    if (EMBEDGATE_CHECK_SECRET !== '' && !hash_equals(EMBEDGATE_CHECK_SECRET, $sent)) {
        status_header(403);
        exit("not the gateway\n");
    }
    if (!is_user_logged_in() || !current_user_can(EMBEDGATE_CAPABILITY)) {
        status_header(403);
        exit("no\n");
    }
    $shares = get_user_meta(get_current_user_id(), 'embedgate_shares', true);
    if (is_string($shares) && $shares !== '') {
        header('X-Embed-Shares: ' . preg_replace('/[^A-Za-z0-9._,*-]/', '', $shares));
    }
    status_header(200);
    exit("yes\n");
}, 0);

/** Whether a post is gated (in the gated category). */
function embedgate_is_gated($post) {
    return $post && has_category(EMBEDGATE_GATED_CATEGORY, $post);
}

/** Whether this request came in on the path prefix the gateway gates. */
function embedgate_on_gated_path() {
    $path = wp_parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
    return is_string($path) && strpos($path, EMBEDGATE_GATED_PREFIX) === 0;
}

function embedgate_gated_term_id() {
    $term = get_category_by_slug(EMBEDGATE_GATED_CATEGORY);
    return $term ? (int) $term->term_id : 0;
}

/** Feeds, search results, archives and the blog home leave gated posts out. */
add_action('pre_get_posts', function ($query) {
    if (is_admin() || $query->is_singular()) {
        return;
    }
    if ($query->is_feed() || $query->is_search() || $query->is_archive() || $query->is_home()) {
        $gated = embedgate_gated_term_id();
        if ($gated) {
            $excluded = array_filter((array) $query->get('category__not_in'));
            $excluded[] = $gated;
            $query->set('category__not_in', $excluded);
        }
    }
});

/** The REST API lists no gated post and shows none's content. */
add_filter('rest_post_query', function ($args) {
    $gated = embedgate_gated_term_id();
    if ($gated) {
        $args['category__not_in'] = array_merge((array) ($args['category__not_in'] ?? []), [$gated]);
    }
    return $args;
});
add_filter('rest_prepare_post', function ($response, $post) {
    if (embedgate_is_gated($post)) {
        $data = $response->get_data();
        foreach (['title', 'content', 'excerpt'] as $field) {
            if (isset($data[$field]['rendered'])) {
                $data[$field]['rendered'] = '';
            }
        }
        $response->set_data($data);
    }
    return $response;
}, 10, 2);

/** oEmbed (which would show a gated post's title and an excerpt) knows no gated post. */
add_filter('oembed_request_post_id', function ($post_id) {
    return embedgate_is_gated(get_post($post_id)) ? 0 : $post_id;
});

/**
 * A gated post asked for under any other URL (?p=5, ?p=5&cpage=1, a date
 * permalink, its comment feed) is sent to its permalink, which the gateway
 * gates; a preview on a public URL shows no content.
 */
add_action('template_redirect', function () {
    if (!is_singular() || embedgate_on_gated_path()) {
        return;
    }
    $post = get_queried_object();
    if (!embedgate_is_gated($post) || is_preview()) {
        return;
    }
    wp_safe_redirect(get_permalink($post), 301);
    exit;
});
$embedgate_hide = function ($text) {
    if (!embedgate_on_gated_path() && embedgate_is_gated(get_post())) {
        return '<p>' . esc_html__('This post is for members.') . '</p>';
    }
    return $text;
};
add_filter('the_content', $embedgate_hide, 1);
add_filter('the_excerpt', $embedgate_hide, 1);
add_filter('the_content_feed', $embedgate_hide, 1);
add_filter('the_excerpt_rss', $embedgate_hide, 1);
