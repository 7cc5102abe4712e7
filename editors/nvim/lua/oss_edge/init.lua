-- oss-edge for Neovim: offline completion and explanation from gpt-oss through `oss-edge lsp`.
local M = {}

--- Optional: change the defaults (see :help oss-edge-setup). `vim.lsp.enable('oss_edge')` works without it.
function M.setup(opts)
  return require('oss_edge.config').setup(opts)
end

--- Called when the server attaches to a buffer: turn on the completion UI this Neovim has.
function M.attach(client, bufnr)
  local options = require('oss_edge.config').options
  if options.inline and vim.lsp.inline_completion then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  elseif vim.lsp.completion then
    -- Neovim 0.11 has no inline completion UI: offer the suggestion as a completion item, on request
    -- (<C-x><C-o> or <C-Space>), because every request costs a model generation.
    vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = false })
    vim.bo[bufnr].omnifunc = 'v:lua.vim.lsp.omnifunc'
  end
end

--- The oss-edge client attached to a buffer, if any.
function M.client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = 'oss_edge' })[1]
end

function M.explain(opts)
  require('oss_edge.explain').explain(opts or {})
end

function M.status()
  local client = M.client()
  if not client then
    vim.notify('oss-edge is not attached to this buffer', vim.log.levels.WARN)
    return
  end
  client:request('ossEdge/status', nil, function(err, status)
    if err then
      vim.notify('oss-edge: ' .. err.message, vim.log.levels.ERROR)
      return
    end
    local parts = { 'oss-edge: ' .. status.state }
    if status.lastLatencyMs ~= vim.NIL and status.lastLatencyMs then
      table.insert(parts, string.format('%d ms', status.lastLatencyMs))
    end
    if status.tokensPerSecond ~= vim.NIL and status.tokensPerSecond then
      table.insert(parts, string.format('%.1f tok/s', status.tokensPerSecond))
    end
    if status.error ~= vim.NIL and status.error then
      table.insert(parts, status.error)
    end
    vim.notify(table.concat(parts, ' · '))
  end)
end

function M.restart()
  for _, client in ipairs(vim.lsp.get_clients({ name = 'oss_edge' })) do
    client:stop()
  end
  vim.defer_fn(function()
    vim.lsp.enable('oss_edge', false)
    vim.lsp.enable('oss_edge')
    vim.cmd.edit() -- re-attach the current buffer
  end, 500)
end

return M
