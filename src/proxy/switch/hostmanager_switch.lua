-- hostmanager's traffic switch, loaded by nginx's master (init_by_lua_block). The app port each
-- request goes to is read from shared memory, which the agent sets through the switch socket at
-- a cutover: nginx is not reloaded, so client keep-alive connections live on. The shared
-- memory survives reloads; at nginx's start it is seeded from the port file the agent wrote.
local balancer = require("ngx.balancer")
local switch = ngx.shared.hostmanager_switch
local PORT_FILE = @PORT_FILE@
local PORTS = { @PORTS@ }
local M = {}

local function app_port(text)
    local port = tonumber(text)
    if port and PORTS[port] then
        return port
    end
    return nil
end

do
    local file = io.open(PORT_FILE, "r")
    if file then
        local port = app_port(file:read("*l"))
        file:close()
        if port then
            switch:set("port", port)
        end
    end
end

-- $request_id is stable for a request, internal redirects (error_page) included, because the
-- agent's config references it in a map (an unreferenced variable is computed on every read).
local function request_key()
    return "request:" .. ngx.var.request_id
end

-- Counts the request as in flight on its port before proxying, so the agent can wait for the
-- old release's requests to finish before stopping it. The port is read again after the
-- count: the agent reads the old port's count only after setting the new port, so a request
-- it has not counted cannot be going to the old port.
function M.balance()
    local key = request_key()
    local port = switch:get(key)
    if not port then
        port = switch:get("port")
        while port do
            switch:incr("inflight:" .. port, 1, 0)
            local now = switch:get("port")
            if now == port then
                break
            end
            switch:incr("inflight:" .. port, -1)
            port = now
        end
        if not port then
            ngx.log(ngx.ERR, "hostmanager: no app port is set yet")
            return ngx.exit(502)
        end
        -- Expires in case a worker dies with the request in flight; the count then stays up
        -- and the drain waits out its timeout.
        switch:set(key, port, 86400)
    end
    local ok, err = balancer.set_current_peer("127.0.0.1", port)
    if not ok then
        ngx.log(ngx.ERR, "hostmanager: cannot proxy to port ", port, ": ", err)
        return ngx.exit(502)
    end
end

-- Log phase: the request is over.
function M.finished()
    local key = request_key()
    local port = switch:get(key)
    if port then
        switch:delete(key)
        switch:incr("inflight:" .. port, -1)
    end
end

-- The switch socket: GET reads, PUT with a port as body sets. The socket is in a directory only
-- root can enter, and only the app's two ports are accepted.
function M.control()
    local method = ngx.req.get_method()
    if method == "PUT" then
        ngx.req.read_body()
        local port = app_port(ngx.req.get_body_data())
        if not port then
            ngx.status = 400
            ngx.say("error: the body must be one of the app's ports")
            return
        end
        switch:set("port", port)
    elseif method ~= "GET" then
        ngx.status = 405
        ngx.say("error: GET or PUT")
        return
    end
    ngx.say("port ", switch:get("port") or "none")
    for port in pairs(PORTS) do
        ngx.say("inflight ", port, " ", switch:get("inflight:" .. port) or 0)
    end
end

return M
